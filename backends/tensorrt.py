"""TensorRT: an engine built from the cached ONNX export, run on a CUDA device.

Cold start is the engine build (or, on a cache hit, its deserialisation); the
harness times it around `prepare`. What differs between the two supported
major versions is only how precision reaches the builder:

- TensorRT 10 builds the fp32 graph in a weakly typed network and is
  *allowed* reduced precision with the `BuilderFlag.FP16` / `BF16` flags
  (it still picks fp32 for a layer where that is faster or the only kernel).
- TensorRT 11 removed those flags: every network is strongly typed and each
  tensor runs in the type the graph gives it. For fp16/bf16 the graph is
  first lowered by `onnx_precision.convert` (weights and compute in the low
  type, fp32 inputs and outputs behind casts), and that graph is built.

In both, fp32 means fp32: TF32 (TensorRT's default for fp32 matmuls and
convolutions on Ampere and newer) is switched off, as the fidelity gate's
1e-4 tolerance for fp32 would otherwise fail.

One optimisation profile covers batch 1 to max(batch, 2) with the measured
batch as the optimum: the fidelity check runs a batch of at most 2 and at most
the measured one, and other dimensions come from the example inputs.

Engines are cached in `cache_dir()/tensorrt/`, keyed by everything that
changes one: the ONNX graph's sha256, the TensorRT version, the GPU's name and
compute capability, the precision, the profile and the build options. Each
engine has a manifest with its own sha256; an engine that does not match it or
that TensorRT refuses to load is rebuilt. A timing cache per TensorRT version
and GPU makes rebuilds of similar graphs faster.

Calls run on the session's own CUDA stream, ordered after the caller's
current stream and before it again on return, so the caller may use the
output right away and the harness's `synchronize` waits for exactly this
session's work. With `cuda_graph=true` each input shape gets its own execution
context, warmed once and captured into a CUDA graph (the measured shape during
`prepare`); where capture fails the session runs plainly and says so in its info.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..bench.cache import cache_dir
from ..bench.errors import BackendUnavailable, UserError
from . import onnx_precision
from .base import Backend, PrepareContext
from .onnx_export import OnnxGraph
from .options import boolean, choice, positive_float
from .torch_device import check_precision, TorchDeviceNames, resolve_device

if TYPE_CHECKING:
    import tensorrt
    import torch

NOT_INSTALLED = "tensorrt is not installed (pip install 'aigcbench[tensorrt]'; its libraries come from NVIDIA's index)"
_CUDA_DEVICE = re.compile(r"^cuda(:\d+)?$")
OPTIMIZATION_LEVELS = ("0", "1", "2", "3", "4", "5")
# The first major version whose networks are always strongly typed (no precision builder flags).
STRONGLY_TYPED_FROM = 11

Shape = tuple[int, ...]
# Per input name: the (min, opt, max) shapes of the one optimisation profile.
Profile = Mapping[str, tuple[Shape, Shape, Shape]]


@dataclass(frozen=True)
class EngineSettings:
    """The `--option` values of this backend, validated once."""

    cuda_graph: bool = False
    workspace_gb: float | None = None
    builder_optimization_level: int | None = None

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> "EngineSettings":
        """Settings from `--option KEY=VALUE` pairs; a bad value is a one-line `UserError`."""
        level = "builder_optimization_level"
        return cls(
            cuda_graph=boolean(options, "cuda_graph"),
            workspace_gb=positive_float(options, "workspace_gb") if "workspace_gb" in options else None,
            builder_optimization_level=(
                int(choice(options, level, OPTIMIZATION_LEVELS, "3")) if level in options else None
            ),
        )

    def build_options(self) -> dict[str, Any]:
        """The settings that change the engine (part of its cache key), TensorRT's defaults named as such."""
        return {
            "workspace_gb": self.workspace_gb if self.workspace_gb is not None else "tensorrt-default",
            "builder_optimization_level": (
                self.builder_optimization_level if self.builder_optimization_level is not None else "tensorrt-default"
            ),
        }


@dataclass(frozen=True)
class Gpu:
    """What an engine is specific to: TensorRT compiles kernels for one GPU architecture."""

    name: str
    capability: tuple[int, int]

    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") + f"-sm{self.capability[0]}{self.capability[1]}"


def major_version(version: str) -> int:
    """The major number of a version string such as "10.13.3.9" or "11.0.0.post1"."""
    return int(version.split(".", 1)[0])


def profile_shapes(
    names: Sequence[str], shapes: Sequence[Shape], batch_size: int
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """The optimisation profile: batch 1 .. max(batch, 2), optimal at `batch_size`, other dims as given.

    A rank-0 input has no batch dimension and keeps its shape.
    """
    if len(names) != len(shapes):
        raise ValueError(f"{len(names)} graph inputs ({', '.join(names)}) but {len(shapes)} example inputs")
    profile = {}
    for name, shape in zip(names, shapes):
        if not shape:
            profile[name] = ((), (), ())
            continue
        rest = tuple(shape[1:])
        profile[name] = ((1, *rest), (batch_size, *rest), (max(batch_size, 2), *rest))
    return profile


def engine_cache_key(
    onnx_sha256: str,
    tensorrt_version: str,
    gpu: Gpu,
    precision: str,
    profile: Profile,
    build_options: Mapping[str, Any],
) -> str:
    """A digest of everything that makes an engine what it is; equal keys may share one engine file."""
    material = {
        "onnx_sha256": onnx_sha256,
        "tensorrt": tensorrt_version,
        "gpu": gpu.name,
        "compute_capability": list(gpu.capability),
        "precision": precision,
        "profile": {name: [list(s) for s in shapes] for name, shapes in sorted(profile.items())},
        "build": dict(sorted(build_options.items())),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def _logger() -> "tensorrt.ILogger":
    """One logger per process: TensorRT keeps the first one it sees and warns about any other.

    Errors only: the CLI owns the terminal, and a failed build or load is
    reported by the exception that follows it.
    """
    import tensorrt as trt

    return trt.Logger(trt.Logger.ERROR)


def _torch_dtype(data_type: Any) -> "torch.dtype":
    import tensorrt as trt
    import torch

    names = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
    for name, dtype in names.items():
        if getattr(trt.DataType, name, None) == data_type:
            return dtype
    raise RuntimeError(f"TensorRT tensor type {data_type} has no torch equivalent")


@dataclass
class _Captured:
    """One input shape frozen into a CUDA graph: its own context, fixed buffers, the graph."""

    context: Any
    inputs: list["torch.Tensor"]
    output: "torch.Tensor"
    graph: Any


@dataclass
class _Binding:
    """The engine's I/O as the session drives it."""

    inputs: tuple[str, ...]
    input_dtypes: tuple["torch.dtype", ...]
    outputs: tuple[str, ...]
    output_dtypes: tuple["torch.dtype", ...]
    profile: Profile


class TensorRTSession:
    """An engine with its stream; called with torch CUDA tensors, returns a new fp32 CUDA tensor."""

    def __init__(self, engine: Any, device: "torch.device", binding: _Binding, info: dict[str, Any], cuda_graph: bool):
        import torch

        self.engine = engine
        self.device = device
        self.info = info
        self.stream = torch.cuda.Stream(device=device)
        self._binding = binding
        # A context holds the activation memory; with CUDA graphs each shape gets its own instead.
        self._context: Any = None if cuda_graph else engine.create_execution_context()
        self._shapes: tuple[Shape, ...] | None = None
        self._captured: dict[tuple[Shape, ...], _Captured] | None = {} if cuda_graph else None
        info["cuda_graph"] = "requested" if cuda_graph else "off"

    def __call__(self, *inputs: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.cuda.device(self.device):
            caller = torch.cuda.current_stream()
            self.stream.wait_stream(caller)  # inputs are written on the caller's stream
            with torch.cuda.stream(self.stream):
                feeds = [
                    t.to(device=self.device, dtype=dtype).contiguous()
                    for t, dtype in zip(inputs, self._binding.input_dtypes)
                ]
                out = self._replay(feeds) if self._captured is not None else self._execute(feeds)
            caller.wait_stream(self.stream)  # the caller reads the output on its stream
        return out.float()

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self._captured = None
        self._context = None
        self.engine = None

    def _execute(self, feeds: list["torch.Tensor"]) -> "torch.Tensor":
        """A plain call on the shared context: bind these tensors, allocate the output, enqueue."""
        if self._context is None:  # CUDA-graph capture failed: run plainly from now on
            self._context = self.engine.create_execution_context()
        shapes = tuple(tuple(t.shape) for t in feeds)
        if shapes != self._shapes:
            self._set_shapes(self._context, feeds)
            self._shapes = shapes
        outputs = self._bind(self._context, feeds)
        self._enqueue(self._context)
        return outputs[0]

    def _replay(self, feeds: list["torch.Tensor"]) -> "torch.Tensor":
        """A call through the CUDA graph of this input shape, capturing it on first sight."""
        assert self._captured is not None
        key = tuple(tuple(t.shape) for t in feeds)
        captured = self._captured.get(key) or self._capture(key, feeds)
        if captured is None:  # capture failed: this session runs plainly from now on
            return self._execute(feeds)
        for static, tensor in zip(captured.inputs, feeds):
            static.copy_(tensor)
        captured.graph.replay()
        # The graph writes the same buffer every time; the caller may keep outputs across calls.
        return captured.output.clone()

    def _capture(self, key: tuple[Shape, ...], feeds: list["torch.Tensor"]) -> _Captured | None:
        """Warm a fresh context on these shapes, then capture one enqueue; None (and why, in info) on failure.

        A context of its own per shape: a captured graph bakes in the state its
        context had for those shapes (TensorRT asks for a new capture after any
        shape change), so one context cannot back two graphs.
        """
        import torch

        context = self.engine.create_execution_context()
        inputs = [t.clone() for t in feeds]
        self._set_shapes(context, inputs)
        outputs = self._bind(context, inputs)
        # TensorRT finishes its shape-dependent setup on the first enqueue, which must not be captured.
        self._enqueue(context)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                self._enqueue(context)
        except RuntimeError as exc:
            self._captured = None
            self.info["cuda_graph"] = f"fallback to plain execution: capture failed ({_first_line(exc)})"
            return None
        captured = _Captured(context, inputs, outputs[0], graph)
        assert self._captured is not None
        self._captured[key] = captured
        self.info["cuda_graph"] = "captured"
        return captured

    def _set_shapes(self, context: Any, feeds: list["torch.Tensor"]) -> None:
        for name, tensor in zip(self._binding.inputs, feeds):
            if not context.set_input_shape(name, tuple(tensor.shape)):
                low, _, high = self._binding.profile.get(name, ((), (), ()))
                raise RuntimeError(
                    f"input {name} of shape {tuple(tensor.shape)} is outside the engine's profile {low}..{high}"
                )

    def _bind(self, context: Any, feeds: list["torch.Tensor"]) -> list["torch.Tensor"]:
        """Point the context at the inputs and at newly allocated outputs of the shapes it infers; return them."""
        import torch

        for name, tensor in zip(self._binding.inputs, feeds):
            context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name, dtype in zip(self._binding.outputs, self._binding.output_dtypes):
            out = torch.empty(tuple(context.get_tensor_shape(name)), dtype=dtype, device=self.device)
            context.set_tensor_address(name, out.data_ptr())
            outputs.append(out)
        return outputs

    def _enqueue(self, context: Any) -> None:
        if not context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (TensorRT's log above says why)")


class TensorRTBackend(TorchDeviceNames, Backend):
    name = "tensorrt"
    compiles = True
    description = "NVIDIA TensorRT engine built from the ONNX export (CUDA devices only)"
    precisions = ("fp32", "fp16", "bf16")
    input_format = "onnx"
    extra = "tensorrt"
    options = {
        "cuda_graph": "true/false: replay each input shape from a captured CUDA graph (default false)",
        "workspace_gb": "GiB of scratch memory tactics may use during the build "
        "(default: TensorRT's, the device's memory)",
        "builder_optimization_level": "0-5: how hard the builder searches for tactics (default: TensorRT's, 3)",
        "exporter": "dynamo | legacy: how the shared ONNX graph is exported (default dynamo)",
    }

    def available(self) -> str | None:
        if importlib.util.find_spec("tensorrt") is None:
            return NOT_INSTALLED
        try:
            import tensorrt as trt
        except (ImportError, OSError) as exc:  # the bindings are there, their libraries are not
            return f"tensorrt does not import ({_first_line(exc)})"
        if major_version(trt.__version__) < 10:
            return f"tensorrt {trt.__version__} is too old; aigcbench needs TensorRT 10 or newer"
        import torch

        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            return f"no CUDA device visible to torch (torch {torch.__version__}, {built})"
        return None

    def version(self) -> str | None:
        for distribution in metadata.packages_distributions().get("tensorrt", []):
            return metadata.version(distribution)
        return None

    def check_options(self, options: Mapping[str, str]) -> None:
        EngineSettings.parse(options)


    def check_device(self, device: str, precision: str) -> None:
        check_precision(_cuda_device(device), precision)
        import tensorrt as trt

        lowering = precision != "fp32" and major_version(trt.__version__) >= STRONGLY_TYPED_FROM
        if lowering and importlib.util.find_spec("onnxruntime") is None:
            raise BackendUnavailable(
                f"tensorrt {trt.__version__} builds {precision} from a lowered ONNX graph, which needs onnxruntime's "
                "converter (pip install onnxruntime)"
            )

    def prepare(
        self,
        model: "torch.nn.Module | OnnxGraph",
        example_inputs: tuple["torch.Tensor", ...],
        precision: str,
        device: str,
        options: Mapping[str, str],
        context: PrepareContext,
    ) -> TensorRTSession:
        """Load the cached engine for this graph, precision, GPU and profile, or build it; return its session."""
        import tensorrt as trt
        import torch

        assert isinstance(model, OnnxGraph), "the harness passes ONNX backends the exported graph"
        settings = EngineSettings.parse(options)
        torch_device = _cuda_device(device)
        strongly_typed = major_version(trt.__version__) >= STRONGLY_TYPED_FROM
        graph = onnx_precision.convert(model, precision) if strongly_typed else model
        profile = profile_shapes(graph.input_names, [tuple(t.shape) for t in example_inputs], context.batch_size)
        gpu = Gpu(torch.cuda.get_device_name(torch_device), torch.cuda.get_device_capability(torch_device))
        key = engine_cache_key(graph.sha256, trt.__version__, gpu, precision, profile, settings.build_options())
        folder = cache_dir() / "tensorrt"
        with torch.cuda.device(torch_device):
            engine, hit, build_info = _cached_engine(
                folder, key, gpu, graph, precision, profile, settings, strongly_typed
            )
            binding = _binding(engine, graph, profile)
            info = {
                "precision_run": precision,
                "tensorrt_version": trt.__version__,
                "device_name": gpu.name,
                "compute_capability": f"{gpu.capability[0]}.{gpu.capability[1]}",
                "engine_cache_hit": hit,
                "engine_path": str(folder / f"{key}.engine"),
                "profile": {n: {"min": list(a), "opt": list(b), "max": list(c)} for n, (a, b, c) in profile.items()},
                **settings.build_options(),
                **build_info,
            }
            if graph is not model:
                info["lowered_graph"] = {"path": str(graph.path), "opset": graph.opset, "cache_hit": graph.cache_hit}
            session = TensorRTSession(engine, torch_device, binding, info, settings.cuda_graph)
            if settings.cuda_graph:
                # Capture the measured shape now, so the record says whether capture worked.
                session(*(t.to(torch_device) for t in example_inputs))
                session.synchronize()
        return session


def _cuda_device(device: str) -> "torch.device":
    """The torch device for `--device`, which must name a CUDA device present here."""
    if not _CUDA_DEVICE.match(device):
        raise UserError(f"tensorrt runs on cuda devices only; got --device {device}")
    return resolve_device(device)


def _binding(engine: Any, graph: OnnxGraph, profile: Profile) -> _Binding:
    """The engine's inputs in the graph's (and the example inputs') order, and its outputs."""
    import tensorrt as trt

    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = tuple(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    if set(inputs) != set(graph.input_names):
        raise RuntimeError(f"engine inputs {sorted(inputs)} differ from the graph's {sorted(graph.input_names)}")
    outputs = tuple(n for n in graph.output_names if n in names)
    if not outputs:
        raise RuntimeError(f"engine outputs {names} include none of the graph's {list(graph.output_names)}")
    return _Binding(
        inputs=graph.input_names,
        input_dtypes=tuple(_torch_dtype(engine.get_tensor_dtype(n)) for n in graph.input_names),
        outputs=outputs,
        output_dtypes=tuple(_torch_dtype(engine.get_tensor_dtype(n)) for n in outputs),
        profile=profile,
    )


def _cached_engine(
    folder: Path,
    key: str,
    gpu: Gpu,
    graph: OnnxGraph,
    precision: str,
    profile: Profile,
    settings: EngineSettings,
    strongly_typed: bool,
) -> tuple[Any, bool, dict[str, Any]]:
    """(engine, cache hit, how it was built) — the cached engine when intact and loadable, else a new build."""
    import tensorrt as trt

    runtime = trt.Runtime(_logger())
    engine_path, manifest_path = folder / f"{key}.engine", folder / f"{key}.json"
    manifest = _read_manifest(manifest_path)
    data = _read_verified(engine_path, manifest)
    engine = runtime.deserialize_cuda_engine(data) if data is not None else None
    if engine is not None:
        return engine, True, manifest.get("build_info", {})
    timing_cache = folder / f"timing-{trt.__version__}-{gpu.slug()}.cache"
    data, build_info = _build(graph, precision, profile, settings, strongly_typed, timing_cache)
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(engine_path, data)
    manifest = {"sha256": hashlib.sha256(data).hexdigest(), "build_info": build_info}
    _write_atomic(manifest_path, json.dumps(manifest).encode())
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise RuntimeError("TensorRT could not load the engine it just built (TensorRT's log above says why)")
    return engine, False, build_info


def _build(
    graph: OnnxGraph,
    precision: str,
    profile: Profile,
    settings: EngineSettings,
    strongly_typed: bool,
    timing_cache: Path,
) -> tuple[bytes, dict[str, Any]]:
    """Parse the graph and build a serialized engine; returns it with what the build used."""
    import tensorrt as trt

    builder = trt.Builder(_logger())
    network = builder.create_network(_network_flags(strongly_typed))
    # The parser owns the weights the network points to: it must live until the build is done.
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse_from_file(str(graph.path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {graph.path}: {errors}")
    config = builder.create_builder_config()
    build_info = _configure_precision(config, precision, strongly_typed)
    optimization_profile = builder.create_optimization_profile()
    for name, (low, optimum, high) in profile.items():
        optimization_profile.set_shape(name, low, optimum, high)
    config.add_optimization_profile(optimization_profile)
    if settings.workspace_gb is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_gb * (1 << 30)))
    if settings.builder_optimization_level is not None:
        config.builder_optimization_level = settings.builder_optimization_level
    build_info["timing_cache_loaded"] = _use_timing_cache(config, timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine (TensorRT's log above says why)")
    _write_atomic(timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized), build_info


def _network_flags(strongly_typed: bool) -> int:
    """Network creation flags: STRONGLY_TYPED where precision must come from the graph.

    TensorRT 11 networks are strongly typed whatever the flags say; the flag is
    set when the enum still has it, for the releases that need it spelled out.
    """
    import tensorrt as trt

    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(flag) if strongly_typed and flag is not None else 0


def _configure_precision(config: Any, precision: str, strongly_typed: bool) -> dict[str, Any]:
    """Set the precision flags TensorRT 10 needs (11 has none) and clear TF32 for fp32; return what was set."""
    import tensorrt as trt

    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if precision == "fp32" and tf32 is not None:
        config.clear_flag(tf32)
    flags: list[str] = []
    if not strongly_typed and precision != "fp32":
        flag = {"fp16": "FP16", "bf16": "BF16"}[precision]
        config.set_flag(getattr(trt.BuilderFlag, flag))
        flags.append(flag)
    return {
        "typing": (
            "strong: precision from the lowered graph" if strongly_typed else "weak: precision from builder flags"
        ),
        "builder_precision_flags": flags,
        "tf32": bool(tf32 is not None and config.get_flag(tf32)),
    }


def _use_timing_cache(config: Any, path: Path) -> bool:
    """Give the build the timing cache stored at `path`; a missing, corrupt or mismatched one starts empty.

    Returns whether a stored cache was used. The cache holds tactic timings
    from earlier builds and only saves build time, so a bad one is dropped,
    not fatal.
    """
    try:
        stored = path.read_bytes()
        cache = config.create_timing_cache(stored) if stored else None
    except (OSError, RuntimeError, TypeError, ValueError):  # unreadable, or bytes TensorRT rejects
        cache = None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return True
    config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    return False


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _read_verified(path: Path, manifest: Mapping[str, Any]) -> bytes | None:
    """The engine file's bytes when they match the manifest's sha256, else None (missing or corrupt)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if manifest.get("sha256") == hashlib.sha256(data).hexdigest() else None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file and rename, so a crash or a concurrent build never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
