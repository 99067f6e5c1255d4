"""TensorFlow: the shared ONNX graph converted by onnx2tf into a SavedModel, run by TensorFlow.

`prepare` converts (or loads from the cache) one static-shape SavedModel per
batch size (`tf_convert`): the conversion is the cold start. A call feeds the
torch tensors' memory to the saved `serving_default` function and returns its
output as a torch tensor; inputs and outputs are in the ONNX (NCHW) layout,
with the transposes onnx2tf's NHWC graph needs inside the function. Another
batch size converts its own variant on first use (only the fidelity check
does that, outside the measured loop).

Runs on the CPU; `--device cuda[:N]` runs on the GPU TensorFlow sees there
(the environment's pins install no CUDA libraries, so TensorFlow sees none
unless `tensorflow[and-cuda]` is added to it), with inputs and outputs copied
through host memory inside the timed call. TensorFlow's intra- and inter-op
thread pools are set before TensorFlow starts and recorded as run. fp32
only: onnx2tf's conversion of a graph lowered to fp16 came out computing in
float32 (its convolutions are float32 ops), so it would not be fp16.

onnx2tf pins exact onnx, onnxruntime and numpy versions that clash with
aigcbench's, so the backend lives in its own environment (`environment`):
`make env-tensorflow` builds it from `envs/tensorflow.txt`, and the harness
runs the backend's cells with that environment's Python.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Mapping

from ..bench.errors import BackendUnavailable, UserError
from . import tf_convert
from .base import Backend, PrepareContext
from .onnx_export import OnnxGraph
from .options import boolean, positive_int
from .torch_device import TorchDeviceNames

if TYPE_CHECKING:
    import torch

_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?)$")
# The pools TensorFlow is asked for, by option name, and the tf.config.threading calls that set and read them.
THREAD_OPTIONS = {"intra_op_threads": "intra_op_parallelism_threads", "inter_op_threads": "inter_op_parallelism_threads"}


def check_tf_device(device: str, backend: str) -> None:
    """Refuse a device that is not cpu or cuda[:N] (bad input), or a GPU TensorFlow does not see (unavailable)."""
    if not _DEVICE.match(device):
        raise UserError(f"backend {backend} runs on cpu or cuda[:N]; got --device {device}")
    if device != "cpu":
        gpus = _gpus()
        index = int(device.partition(":")[2] or 0)
        if index >= len(gpus):
            import tensorflow as tf

            raise BackendUnavailable(
                f"TensorFlow {tf.__version__} sees {len(gpus)} GPU(s) here, so no {device} (the {tf_convert.ENVIRONMENT} "
                "environment installs no CUDA libraries; add tensorflow[and-cuda] to it for a GPU)"
            )


def _gpus() -> list[Any]:
    tf_convert.quiet_tensorflow()
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def configure(device: str, options: Mapping[str, str]) -> dict[str, Any]:
    """Set TensorFlow's devices and thread pools before it starts; returns them as recorded.

    TensorFlow fixes both when its runtime starts (the first conversion or call) and
    refuses a change afterwards; the same values again are accepted, so the components
    of one cell configure alike.
    """
    tf_convert.quiet_tensorflow()
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    chosen = [] if device == "cpu" else [gpus[int(device.partition(":")[2] or 0)]]
    settings: dict[str, Any] = {}
    try:
        if gpus:  # a CPU cell on a GPU machine must not be placed on the GPU by TensorFlow's default
            tf.config.set_visible_devices(chosen, "GPU")
        for key, name in THREAD_OPTIONS.items():
            if key in options:
                getattr(tf.config.threading, f"set_{name}")(positive_int(options, key))
    except RuntimeError as exc:  # only one cell per process: a second configuration is a harness bug
        raise RuntimeError(f"TensorFlow was already started with other settings: {exc}") from None
    for key, name in THREAD_OPTIONS.items():
        value = getattr(tf.config.threading, f"get_{name}")()
        settings[key] = value if value else "tf-default"  # 0: TensorFlow sizes the pool from the cores
    settings["tf_device"] = "/CPU:0" if device == "cpu" else "/GPU:0"
    return settings


class TensorFlowSession:
    """Calls the saved function of the session's batch with torch tensors; host tensors in and out."""

    def __init__(self, graph: OnnxGraph, strict: bool, first: tf_convert.Converted, info: dict[str, Any]) -> None:
        import torch

        self.device = torch.device("cpu")
        self.info = info
        self._graph, self._strict = graph, strict
        self._by_batch: dict[int, tuple[Any, list[str], Any]] = {}
        self._load(first)
        self._from_numpy = torch.from_numpy

    def _load(self, converted: tf_convert.Converted) -> tuple[Any, list[str], Any]:
        import tensorflow as tf

        # The loaded object owns the variables the signature reads: it is kept alive with the function.
        saved = tf.saved_model.load(str(converted.saved_model))
        loaded = (saved.signatures[tf_convert.SIGNATURE], list(converted.manifest["arguments"]), saved)
        self._by_batch[int(converted.manifest["batch"])] = loaded
        return loaded

    def _for_batch(self, batch: int) -> tuple[Any, list[str], Any]:
        if batch in self._by_batch:
            return self._by_batch[batch]
        return self._load(tf_convert.saved_model(self._graph, batch, self._strict))

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        function, names, _ = self._for_batch(int(inputs[0].shape[0]))
        # `numpy()` shares the tensor's memory; TensorFlow copies what it feeds in.
        out = function(**{name: t.numpy() for name, t in zip(names, inputs)})["output"]
        return self._from_numpy(out.numpy())

    def synchronize(self) -> None:
        """Calls return finished results: `.numpy()` waits for TensorFlow."""

    def close(self) -> None:
        self._by_batch.clear()


class TensorFlowBackend(TorchDeviceNames, Backend):
    name = "tensorflow"
    compiles = True
    description = "TensorFlow on a SavedModel converted by onnx2tf from the cached ONNX export (own environment)"
    precisions = ("fp32",)
    input_format = "onnx"
    environment = tf_convert.ENVIRONMENT
    distributions = ("tensorflow", "tensorflow-cpu")
    options = {
        "intra_op_threads": "threads inside an operator (default: TensorFlow's, from the cores)",
        "inter_op_threads": "threads across operators (default: TensorFlow's)",
        "strict": "true/false: onnx2tf's strict accuracy correction (default true; false converts faster "
        "and may transpose wrongly: the fidelity gate tells)",
        "exporter": "dynamo | legacy: how the shared ONNX graph is exported (default dynamo)",
    }

    def available(self) -> str | None:
        return tf_convert.missing(tf_convert.NEEDS)

    def check_options(self, options: Mapping[str, str]) -> None:
        boolean(options, "strict", True)
        for key in THREAD_OPTIONS:
            if key in options:
                positive_int(options, key)


    def check_device(self, device: str, precision: str) -> None:
        check_tf_device(device, self.name)

    def prepare(
        self,
        model: "torch.nn.Module | OnnxGraph",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> TensorFlowSession:
        assert isinstance(model, OnnxGraph), "the harness passes ONNX backends the exported graph"
        settings = configure(device, options)
        strict = boolean(options, "strict", True)
        converted = tf_convert.saved_model(model, int(example_inputs[0].shape[0]), strict)
        info = {
            "precision_run": "fp32",
            **settings,
            "io": "NCHW torch tensors in host memory, as for every session; onnx2tf's NHWC transposes run "
            "inside the saved function",
            "conversion": converted.describe(),
            "tensorflow_version": tf_convert.versions()["tensorflow"],
        }
        return TensorFlowSession(model, strict, converted, info)
