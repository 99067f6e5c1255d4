"""OpenVINO: the same cached ONNX graph as ONNX Runtime, compiled for CPU, GPU, NPU or AUTO.

Configured the way OpenVINO's own `benchmark_app` configures it:
- the performance hint follows the scenario: LATENCY for single-stream,
  THROUGHPUT (several streams) for offline throughput, where one call's batch
  is split across `OPTIMAL_NUMBER_OF_INFER_REQUESTS` requests run together by an
  `AsyncInferQueue`;
- shapes are made static for the batch the session will see (`reshape`), as
  benchmark_app does with `-shape`; another batch size compiles its own
  variant on first use (only the fidelity check does that, outside the loop);
- `INFERENCE_PRECISION_HINT` is always set from `--precision`: OpenVINO runs
  bf16 on CPUs that support it unless told otherwise. The precision it actually
  compiled for is read back and recorded, with streams and infer requests.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

from ..bench.errors import BackendUnavailable, UserError
from .base import Backend, PrepareContext
from .onnx_export import OnnxGraph
from .options import choice, positive_int

if TYPE_CHECKING:
    import openvino
    import torch

# --precision → INFERENCE_PRECISION_HINT, and the device capability it needs.
PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
CAPABILITIES = {"bf16": "BF16", "fp16": "FP16"}
RUN_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}


def ov_device(device: str) -> str:
    """`--device` → OpenVINO's device name: cpu → CPU, gpu:1 → GPU.1, npu → NPU, auto → AUTO."""
    kind, colon, index = device.partition(":")
    if kind not in ("cpu", "gpu", "npu", "auto"):
        raise UserError(f"backend openvino runs on cpu, gpu[:N], npu or auto; got --device {device!r}", key="device")
    # Only GPUs are numbered: OpenVINO's CPU plugin refuses any device id at compile time.
    if colon and (kind != "gpu" or not index.isdigit()):
        raise UserError(f"backend openvino numbers only GPUs (gpu:N); got --device {device!r}", key="device")
    return kind.upper() + (f".{index}" if index else "")


class _Compiled:
    """One static-shape compilation with the requests that run it."""

    def __init__(self, compiled: "openvino.CompiledModel", requests: int) -> None:
        import openvino as ov

        self.compiled = compiled
        self.requests = requests
        self.request = compiled.create_infer_request()
        # numpy views of the request's own input buffers, made once: the
        # request keeps these tensors for its lifetime (we never set others).
        self.input_views = [self.request.get_input_tensor(i).data for i in range(len(compiled.inputs))]
        self.queue = ov.AsyncInferQueue(compiled, requests) if requests > 1 else None

    def infer(self, arrays: list[Any]) -> Any:
        """One synchronous inference on the single request; returns output 0 as a new array.

        Inputs are copied into the request's own buffers and the request runs
        with no arguments, as benchmark_app runs it. `infer(list, share_inputs=True)`
        and `result[0]` go through OpenVINO's Python dispatch (singledispatch,
        and listing every input tensor to test for a single-input model):
        replacing them saved ~0.3 ms per call here, ~10 % of a 2.8 ms DCGAN
        call, while copying a batch-1 input costs microseconds. `infer()`
        returns copies of the outputs, which the next call cannot overwrite.
        """
        import numpy as np

        for view, array in zip(self.input_views, arrays):
            if view.shape != array.shape:  # copyto would broadcast silently
                raise ValueError(f"input of shape {array.shape} for a model compiled for {view.shape}")
            np.copyto(view, array)
        return self.request.infer().to_tuple()[0]


class OpenVinoSession:
    """Calls a compiled model with torch tensors (host memory; OpenVINO devices take host buffers)."""

    def __init__(self, backend_state: "_ModelState", info: dict[str, Any]) -> None:
        import torch

        self._state = backend_state
        self.device = torch.device("cpu")
        self.info = info
        self._from_numpy = torch.from_numpy

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        # Per call only numpy views in and one tensor out: right after an
        # inference has evicted them from the caches, even a no-op torch call
        # (`contiguous()`, `.shape`) costs 15–60 µs here. A non-contiguous
        # array is copied by `np.copyto` or by OpenVINO's input dispatch.
        arrays = [t.numpy() for t in inputs]
        compiled = self._state.for_batch(arrays[0].shape[0])
        if compiled.queue is None:
            return self._from_numpy(compiled.infer(arrays))
        return self._from_numpy(_run_split(compiled, arrays))

    def synchronize(self) -> None:
        """Calls return finished results: the request waits for its device."""

    def close(self) -> None:
        self._state = None  # type: ignore[assignment]


def _run_split(compiled: _Compiled, arrays: list[Any]) -> Any:
    """Split the batch across the queue's requests, run them together, concatenate in order."""
    import numpy as np

    batch = arrays[0].shape[0]
    chunk = math.ceil(batch / compiled.requests)
    outputs: dict[int, Any] = {}

    def done(request: Any, index: int) -> None:
        outputs[index] = request.get_output_tensor(0).data.copy()

    assert compiled.queue is not None
    compiled.queue.set_callback(done)
    for index, start in enumerate(range(0, batch, chunk)):
        compiled.queue.start_async([a[start : start + chunk] for a in arrays], userdata=index, share_inputs=True)
    compiled.queue.wait_all()
    return np.concatenate([outputs[i] for i in sorted(outputs)])


class _ModelState:
    """The read model and its compilations per input batch size."""

    def __init__(self, core: Any, model: Any, device: str, config: dict[str, Any], requests: int | None, throughput: bool):
        self.core, self.model, self.device, self.config = core, model, device, config
        self.requests, self.throughput = requests, throughput
        self._by_batch: dict[int, _Compiled] = {}

    def for_batch(self, batch: int) -> _Compiled:
        if batch not in self._by_batch:
            self._by_batch[batch] = self._compile(batch)
        return self._by_batch[batch]

    def _compile(self, batch: int) -> _Compiled:
        requests = 1
        if self.throughput:
            probe = self.core.compile_model(self._static(1), self.device, self.config)
            requests = self.requests or int(probe.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            requests = max(1, min(requests, batch))
        per_request = math.ceil(batch / requests)
        compiled = self.core.compile_model(self._static(per_request), self.device, self.config)
        return _Compiled(compiled, requests)

    def _static(self, batch: int) -> Any:
        model = self.model.clone()
        model.reshape({port.get_any_name(): [batch, *list(port.get_partial_shape())[1:]] for port in model.inputs})
        return model


class OpenVinoBackend(Backend):
    name = "openvino"
    compiles = True
    description = "OpenVINO on the cached ONNX export (CPU, GPU, NPU, AUTO), configured like benchmark_app"
    precisions = ("fp32", "bf16", "fp16")
    input_format = "onnx"
    distributions = ("openvino",)
    extra = "openvino"
    options = {
        "hint": "latency | throughput (default: from --scenario)",
        "streams": "NUM_STREAMS (default: chosen by the hint)",
        "infer_requests": "parallel requests in throughput mode (default: OPTIMAL_NUMBER_OF_INFER_REQUESTS)",
        "threads": "INFERENCE_NUM_THREADS (default: OpenVINO's)",
        "exporter": "dynamo | legacy: how the shared ONNX graph is exported (default dynamo)",
    }

    def available(self) -> str | None:
        return self.missing_library("openvino")

    def check_options(self, options: Mapping[str, str]) -> None:
        choice(options, "hint", tuple(HINTS), "latency")
        for key in ("streams", "threads", "infer_requests"):
            if key in options:
                positive_int(options, key)

    def check_device_name(self, device: str) -> None:
        ov_device(device)

    def check_device(self, device: str, precision: str) -> None:
        import openvino as ov

        name = ov_device(device)
        core = ov.Core()
        present = core.available_devices
        # One GPU is listed as "GPU", several as "GPU.0", "GPU.1": gpu:0 is either, gpu:N must be listed.
        listed = name in present or (name in ("GPU", "GPU.0") and {"GPU", "GPU.0"} & set(present))
        if name != "AUTO" and not listed:
            raise BackendUnavailable(f"OpenVINO sees no {name} device here (available: {', '.join(present)})")
        if precision in CAPABILITIES and name != "AUTO":
            capabilities = list(core.get_property(name, "OPTIMIZATION_CAPABILITIES"))
            if CAPABILITIES[precision] not in capabilities:
                # This machine lacks it, another has it: unavailable here (exit 3; a sweep skips the
                # cell), not bad input — the protocol's rule in Backend.check_device.
                raise BackendUnavailable(
                    f"--precision {precision}: OpenVINO {name} on this machine computes {', '.join(capabilities)} "
                    f"(OPTIMIZATION_CAPABILITIES), not {CAPABILITIES[precision]}"
                )

    def prepare(
        self,
        model: "torch.nn.Module | OnnxGraph",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> OpenVinoSession:
        import openvino as ov

        assert isinstance(model, OnnxGraph), "the harness passes ONNX backends the exported graph"
        default_hint = "throughput" if context.scenario == "throughput" else "latency"
        hint = choice(options, "hint", tuple(HINTS), default_hint)
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": HINTS[hint],
            "INFERENCE_PRECISION_HINT": PRECISION_HINTS[precision],
        }
        if "streams" in options:
            config["NUM_STREAMS"] = str(positive_int(options, "streams"))
        if "threads" in options:
            config["INFERENCE_NUM_THREADS"] = positive_int(options, "threads")
        requests = positive_int(options, "infer_requests") if "infer_requests" in options else None
        core = ov.Core()
        state = _ModelState(core, core.read_model(str(model.path)), ov_device(device), config, requests, hint == "throughput")
        compiled = state.for_batch(int(example_inputs[0].shape[0]))  # compile now: cold start, not first call
        return OpenVinoSession(state, _as_run(compiled, hint, ov.__version__))


def _as_run(compiled: _Compiled, hint: str, version: str) -> dict[str, Any]:
    """What OpenVINO says it compiled: precision, streams, threads, requests (recorded with the result)."""
    model = compiled.compiled
    precision = model.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # an ov.Type: "f32", "bf16"
    info: dict[str, Any] = {
        "precision_run": RUN_PRECISION.get(precision, precision),
        "inference_precision_hint": precision,
        "performance_hint": hint,
        "num_streams": int(model.get_property("NUM_STREAMS")),
        "optimal_infer_requests": int(model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
        "infer_requests": compiled.requests,
        "execution_devices": list(model.get_property("EXECUTION_DEVICES")),
        "openvino_version": version,
    }
    try:
        info["inference_num_threads"] = int(model.get_property("INFERENCE_NUM_THREADS"))
    except RuntimeError:  # not every device plugin exposes it
        info["inference_num_threads"] = None
    return info
