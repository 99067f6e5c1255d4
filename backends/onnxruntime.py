"""ONNX Runtime: the cached ONNX graph on an execution provider chosen from `--device`.

`cpu` runs the CPU provider; `cuda[:i]` the CUDA provider with I/O binding, so
inputs and outputs stay on the GPU and no host copy is timed by accident.
`--option provider=tensorrt|openvino` selects those providers when the
installed onnxruntime build has them. fp16 runs a converted graph (fp32 inputs
and outputs, fp16 inside); the graph-optimisation level and thread counts are
recorded as run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ..bench.errors import BackendUnavailable, UserError
from .base import Backend, PrepareContext
from .onnx_export import OnnxGraph
from .options import choice, positive_int
from .torch_device import TorchDeviceNames

if TYPE_CHECKING:
    import onnxruntime
    import torch

OPTIMIZATION_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
                       "all": "ORT_ENABLE_ALL"}
EXECUTION_MODES = {"sequential": "ORT_SEQUENTIAL", "parallel": "ORT_PARALLEL"}
# --option provider=... → the providers list, most preferred first (ORT falls back in order).
PROVIDERS = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "openvino": ("OpenVINOExecutionProvider", "CPUExecutionProvider"),
}
GPU_PROVIDERS = ("cuda", "tensorrt")


def _provider_choice(device: str, options: Mapping[str, str]) -> str:
    default = "cuda" if device.startswith("cuda") else "cpu"
    chosen = choice(options, "provider", tuple(PROVIDERS), default)
    if device.startswith("cuda") != (chosen in GPU_PROVIDERS):
        raise UserError(f"--option provider={chosen} does not run on --device {device}")
    return chosen


class OrtSession:
    """An InferenceSession called with torch tensors; CUDA sessions bind device memory directly."""

    def __init__(self, session: "onnxruntime.InferenceSession", device: "torch.device", info: dict[str, Any]) -> None:
        import torch

        self._session = session
        self.device = device
        self.info = info
        self._inputs = [i.name for i in session.get_inputs()]
        self._output = session.get_outputs()[0]
        # Decided once, not per call: right after an inference has evicted them
        # from the caches, even trivial torch calls (a device check, a no-op
        # `contiguous()`) cost 15–30 µs each here; dropping them from the call
        # saved ~25 µs, 1 % of a 2.5 ms DCGAN call.
        self._bound = device.type == "cuda"
        self._output_names = [self._output.name]
        self._from_numpy = torch.from_numpy

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        if self._bound:
            return self._run_bound(inputs)
        # `numpy()` shares the tensor's memory; ORT itself copies a non-contiguous array.
        feed = {name: t.numpy() for name, t in zip(self._inputs, inputs)}
        return self._from_numpy(self._session.run(self._output_names, feed)[0])

    def _run_bound(self, inputs: tuple["torch.Tensor", ...]) -> "torch.Tensor":
        """I/O binding: ORT reads the torch input buffers and writes into a torch output buffer."""
        import numpy as np
        import torch

        batch = inputs[0].shape[0]
        shape = [batch if not isinstance(d, int) else d for d in self._output.shape]
        output = torch.empty(shape, dtype=torch.float32, device=self.device)
        binding = self._session.io_binding()
        index = self.device.index or 0
        for name, tensor in zip(self._inputs, inputs):
            tensor = tensor.contiguous()
            binding.bind_input(name, "cuda", index, _numpy_dtype(tensor), list(tensor.shape), tensor.data_ptr())
        binding.bind_output(self._output.name, "cuda", index, np.float32, shape, output.data_ptr())
        # Inputs were written on torch's stream; ORT runs on its own.
        torch.cuda.current_stream(self.device).synchronize()
        self._session.run_with_iobinding(binding)
        return output

    def synchronize(self) -> None:
        if self._bound:
            import torch

            torch.cuda.synchronize(self.device)

    def close(self) -> None:
        self._session = None  # type: ignore[assignment]


def _numpy_dtype(tensor: "torch.Tensor") -> Any:
    import torch

    return {torch.float32: "float32", torch.int64: "int64", torch.float16: "float16"}[tensor.dtype]


class OnnxRuntimeBackend(TorchDeviceNames, Backend):
    name = "onnxruntime"
    compiles = True
    description = "ONNX Runtime on the cached ONNX export (CPU, CUDA, TensorRT or OpenVINO provider)"
    precisions = ("fp32", "fp16")
    input_format = "onnx"
    distributions = ("onnxruntime", "onnxruntime-gpu")
    extra = "onnx"
    options = {
        "provider": "cpu | cuda | tensorrt | openvino (default: from --device)",
        "graph_optimization_level": "disable | basic | extended | all (default all)",
        "intra_op_threads": "threads inside an operator (default: ORT's, one per physical core)",
        "inter_op_threads": "threads across operators, parallel mode only",
        "execution_mode": "sequential | parallel (default sequential)",
        "exporter": "dynamo | legacy: how the shared ONNX graph is exported (default dynamo)",
    }

    def available(self) -> str | None:
        return self.missing_library("onnxruntime")

    def check_options(self, options: Mapping[str, str]) -> None:
        choice(options, "provider", tuple(PROVIDERS), "cpu")
        choice(options, "graph_optimization_level", tuple(OPTIMIZATION_LEVELS), "all")
        choice(options, "execution_mode", tuple(EXECUTION_MODES), "sequential")
        for key in ("intra_op_threads", "inter_op_threads"):
            if key in options:
                positive_int(options, key)


    def check_device(self, device: str, precision: str) -> None:
        import onnxruntime as ort

        if device != "cpu" and not device.startswith("cuda"):
            raise UserError(f"backend onnxruntime runs on cpu or cuda[:N]; got --device {device}")
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendUnavailable(
                    "onnxruntime has no CUDA execution provider (this build is CPU-only; pip install onnxruntime-gpu)"
                )
            from .torch_device import resolve_device

            resolve_device(device)

    def prepare(
        self,
        model: "torch.nn.Module | OnnxGraph",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> OrtSession:
        import onnxruntime as ort
        import torch

        assert isinstance(model, OnnxGraph), "the harness passes ONNX backends the exported graph"
        provider = _provider_choice(device, options)
        missing = [p for p in PROVIDERS[provider][:1] if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(f"onnxruntime build has no {missing[0]} (available: {', '.join(ort.get_available_providers())})")
        graph = model
        if precision != "fp32":
            from .onnx_precision import convert

            graph = convert(model, precision)
        session_options, settings = _session_options(options)
        torch_device = torch.device(device if device != "cuda" else "cuda:0")
        providers: list[Any] = list(PROVIDERS[provider])
        if provider in GPU_PROVIDERS:
            index = torch_device.index or 0
            providers = [(p, {"device_id": index}) if p != "CPUExecutionProvider" else p for p in providers]
        session = ort.InferenceSession(str(graph.path), sess_options=session_options, providers=providers)
        info = {
            "precision_run": precision,
            "providers": session.get_providers(),
            "io_binding": torch_device.type == "cuda",
            "onnxruntime_version": ort.__version__,
            **settings,
        }
        return OrtSession(session, torch_device, info)


def _session_options(options: Mapping[str, str]) -> tuple[Any, dict[str, Any]]:
    """SessionOptions from `--option`s, and the settings as recorded (ORT's defaults named as such)."""
    import onnxruntime as ort

    level = choice(options, "graph_optimization_level", tuple(OPTIMIZATION_LEVELS), "all")
    mode = choice(options, "execution_mode", tuple(EXECUTION_MODES), "sequential")
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[level])
    so.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[mode])
    settings: dict[str, Any] = {"graph_optimization_level": level, "execution_mode": mode}
    for key, attribute in (("intra_op_threads", "intra_op_num_threads"), ("inter_op_threads", "inter_op_num_threads")):
        if key in options:
            setattr(so, attribute, positive_int(options, key))
            settings[key] = getattr(so, attribute)
        else:
            settings[key] = "ort-default"
    return so, settings
