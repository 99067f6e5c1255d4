"""LiteRT (ai-edge-litert): the `.tflite` file of the tensorflow backend's onnx2tf conversion, on the CPU.

The SavedModel that `tf_convert` converts from the shared ONNX graph is
turned into a `.tflite` file with TFLite's builtin operators only (LiteRT's
interpreter has no Flex delegate for TensorFlow operators), cached beside
it; both steps are the cold start. The interpreter runs it through its
default CPU delegate, XNNPACK, with `--option num_threads` threads (LiteRT's
default otherwise). A call goes through the model's `serving_default`
signature runner, which takes and returns the ONNX (NCHW) tensors, like every
session: the NHWC transposes are inside the model. fp32 only: onnx2tf's
float16 `.tflite` stores fp16 weights that are dequantised to float32 when
loaded, so it would not compute in fp16.

Same environment as the tensorflow backend (`make env-tensorflow`), which
brings `ai-edge-litert` with the onnx2tf that pins it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..bench.errors import UserError
from . import tf_convert
from .base import Backend, PrepareContext
from .onnx_export import OnnxGraph
from .options import boolean, positive_int
from .torch_device import TorchDeviceNames

if TYPE_CHECKING:
    import torch

NEEDS = {**tf_convert.NEEDS, "ai_edge_litert": "ai-edge-litert"}


class LiteRtSession:
    """One interpreter per batch size, called through its signature runner with torch tensors' memory."""

    def __init__(self, graph: OnnxGraph, strict: bool, threads: int | None, batch: int, info: dict[str, Any]) -> None:
        import torch

        self.device = torch.device("cpu")
        self.info = info
        self._graph, self._strict, self._threads = graph, strict, threads
        self._by_batch: dict[int, tuple[Any, list[str]]] = {}
        self._from_numpy = torch.from_numpy
        self._for_batch(batch)

    def _for_batch(self, batch: int) -> tuple[Any, list[str]]:
        if batch not in self._by_batch:
            from ai_edge_litert.interpreter import Interpreter

            converted = tf_convert.saved_model(self._graph, batch, self._strict)
            path, hit = tf_convert.tflite(converted)
            self.info.setdefault("tflite", {"path": str(path), "cache_hit": hit, "conversion": converted.describe()})
            interpreter = Interpreter(model_path=str(path), num_threads=self._threads)
            runner = interpreter.get_signature_runner(tf_convert.SIGNATURE)
            # The interpreter must outlive its runner: keep both.
            self._by_batch[batch] = ((interpreter, runner), list(converted.manifest["arguments"]))
        return self._by_batch[batch]

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        (_, runner), names = self._for_batch(int(inputs[0].shape[0]))
        # The runner copies the arrays into the interpreter's buffers and returns copies of the outputs.
        return self._from_numpy(runner(**{name: t.numpy() for name, t in zip(names, inputs)})["output"])

    def synchronize(self) -> None:
        """Calls return finished results: `invoke` runs to completion on the CPU."""

    def close(self) -> None:
        self._by_batch.clear()


class LiteRtBackend(TorchDeviceNames, Backend):
    name = "litert"
    compiles = True
    description = "LiteRT (ai-edge-litert, XNNPACK) on the .tflite file of the onnx2tf conversion (own environment)"
    precisions = ("fp32",)
    input_format = "onnx"
    environment = tf_convert.ENVIRONMENT
    distributions = ("ai-edge-litert",)
    options = {
        "num_threads": "the interpreter's threads (default: LiteRT's)",
        "strict": "true/false: onnx2tf's strict accuracy correction (default true), as for the tensorflow backend",
        "exporter": "dynamo | legacy: how the shared ONNX graph is exported (default dynamo)",
    }

    def available(self) -> str | None:
        return tf_convert.missing(NEEDS)

    def check_options(self, options: Mapping[str, str]) -> None:
        boolean(options, "strict", True)
        if "num_threads" in options:
            positive_int(options, "num_threads")


    def check_device(self, device: str, precision: str) -> None:
        if device != "cpu":
            raise UserError(f"backend litert runs on cpu (its GPU delegates are for mobile devices); got --device {device}")

    def prepare(
        self,
        model: "torch.nn.Module | OnnxGraph",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> LiteRtSession:
        assert isinstance(model, OnnxGraph), "the harness passes ONNX backends the exported graph"
        tf_convert.quiet_tensorflow()
        threads = positive_int(options, "num_threads") if "num_threads" in options else None
        info: dict[str, Any] = {
            "precision_run": "fp32",
            "num_threads": threads if threads is not None else "litert-default",
            "delegate": "XNNPACK (LiteRT's default CPU delegate)",
            "litert_version": self.version(),
        }
        return LiteRtSession(model, boolean(options, "strict", True), threads, int(example_inputs[0].shape[0]), info)

