"""Parity: our measured loop against each runtime vendor's own benchmark loop.

The claim under test: running a model through an aigcbench `Session`, timed by
`bench.measure.measure`, is as fast as the loop the runtime's own tool times —
same model, same ONNX file, same hint, precision (fp32) and batch (1). One
function per reference:

- `compare_with_benchmark_app` — OpenVINO's `benchmark_app -hint latency`,
  which runs one request synchronously. Its throughput is iterations / loop
  wall time, like ours; its median is OpenVINO's own per-request latency,
  measured inside `infer`, so it leaves out the Python call and the copies
  that ours includes.
- `compare_with_bare_ort_loop` — `InferenceSession.run` in a bare loop over a
  prepared numpy feed, on a session made with the settings ours recorded,
  timed with `time.perf_counter_ns`, as many calls as our round made.
- `compare_with_onnxruntime_test` — ONNX Runtime's `onnxruntime_test` script:
  default session, random inputs, as many calls as our round made; it prints
  only loop time / calls, so it has throughput and no median. It does not warm
  up, so its first call counts against it: measured here, +25 ms on ~20 DDPM
  UNet calls of 90 ms (~1.4 % in our favour), +2 ms on ~400 DCGAN calls (~0.5 %).
- `compare_with_torch_timer` — `torch.utils.benchmark.Timer.blocked_autorange`
  on the same module and input tensors, with our thread count (the Timer
  defaults to one thread) and under `torch.inference_mode()` entered once, the
  cheapest way to call a module. Its median is the median of its blocks'
  per-call means (one call per block for slow models).

Each comparison alternates our loop and the reference loop, `rounds` times,
each loop running `seconds`: this machine drifts by 10–30 % within minutes, so
only neighbours in time are compared. A `Parity` keeps every round; its ratio
is the median over rounds of our throughput / the reference's.

What stays between us and a reference on a fast model: our call takes and
returns torch tensors (the `Session` protocol) where the references reuse one
numpy feed, and the harness calls `session(...)` then `synchronize()`. Right
after an inference has evicted them from the caches, each such Python or torch
operation costs 5–60 µs here (1–5 µs warm): measured call by call, ~0.1 ms per
OpenVINO call (half converting inputs and output, half the two calls) and
~0.05 ms per ONNX Runtime call — 2–4 % of a 2.5 ms DCGAN call, 0.1 % of a
100 ms UNet call.
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from aigcbench.backends import registry
from aigcbench.backends.base import PrepareContext, Session
from aigcbench.bench.clock import perf_clock
from aigcbench.bench.measure import measure, warm_up
from aigcbench.bench.stats import percentile
from aigcbench.bench.stopping import StopRule, WarmupRule
from parity_tools import (
    ReferenceUnavailable,
    find_tool,
    read_benchmark_app_report,
    read_onnxruntime_test_latency_ms,
    run_tool,
)

if TYPE_CHECKING:
    import onnxruntime
    import torch

    from aigcbench.backends.onnx_export import OnnxGraph

# Our loop stops on duration like the references do; a floor of calls keeps a
# median meaningful for a model slower than the round.
MIN_CALLS = 3
WARMUP = WarmupRule(iterations=2, duration_s=1.0)
# Beyond the measured seconds, a tool process reads, compiles and warms up the
# model: generous, since a hung tool is what the timeout is for.
TOOL_STARTUP_TIMEOUT_S = 180.0
# benchmark_app's names for numpy dtypes (its -iop option).
OV_TYPES = {"float32": "f32", "float16": "f16", "int64": "i64", "int32": "i32"}


@dataclass(frozen=True)
class Side:
    """One loop: calls per second over its wall time, and its median call latency."""

    calls_per_s: float
    median_ms: float | None  # None where the tool reports no median


@dataclass(frozen=True)
class Parity:
    """Our loop against one reference loop, round by round (`ours[i]` ran just before `theirs[i]`)."""

    backend: str
    model: str
    reference: str
    ours: tuple[Side, ...]
    theirs: tuple[Side, ...]

    @property
    def ratios(self) -> tuple[float, ...]:
        """Each round's our throughput / the reference's: > 1 means we were faster."""
        return tuple(o.calls_per_s / t.calls_per_s for o, t in zip(self.ours, self.theirs))

    @property
    def ratio(self) -> float:
        """The median of the rounds' ratios: one slow spell of the machine moves it by at most one rank."""
        return statistics.median(self.ratios)

    @property
    def ours_calls_per_s(self) -> float:
        return statistics.median(side.calls_per_s for side in self.ours)

    @property
    def theirs_calls_per_s(self) -> float:
        return statistics.median(side.calls_per_s for side in self.theirs)

    @property
    def ours_median_ms(self) -> float | None:
        return _median_of_medians(self.ours)

    @property
    def theirs_median_ms(self) -> float | None:
        return _median_of_medians(self.theirs)


def _median_of_medians(sides: tuple[Side, ...]) -> float | None:
    medians = [side.median_ms for side in sides if side.median_ms is not None]
    return statistics.median(medians) if medians else None


def compare_with_benchmark_app(
    graph: "OnnxGraph", inputs: tuple["torch.Tensor", ...], model: str, *, rounds: int, seconds: int
) -> Parity:
    """Our OpenVINO session (latency hint, fp32) against `benchmark_app` on the same file and inputs."""
    tool = find_tool("benchmark_app", "pip install openvino")
    session = _prepare("openvino", graph, inputs)
    ours, theirs = [], []
    try:
        with tempfile.TemporaryDirectory(prefix="aigcbench-parity-") as folder:
            argv = _benchmark_app_argv(tool, graph, inputs, Path(folder), seconds)
            report = Path(folder) / "benchmark_report.json"
            for _ in range(rounds):
                ours.append(_our_round(session, inputs, seconds)[0])
                theirs.append(_benchmark_app_round(argv, report, seconds))
    finally:
        session.close()
    return Parity("openvino", model, "benchmark_app", tuple(ours), tuple(theirs))


def _benchmark_app_argv(
    tool: Path, graph: "OnnxGraph", inputs: tuple["torch.Tensor", ...], folder: Path, seconds: int
) -> list[str]:
    """benchmark_app configured as our session: static batch-1 shapes, latency hint, f32, our inputs.

    Inputs go in as .npy files; `-iop` keeps their types (given files,
    benchmark_app would otherwise assume u8 images and add a conversion).
    """
    import numpy as np

    shapes, files, types = [], [], []
    for name, tensor in zip(graph.input_names, inputs):
        array = tensor.numpy()
        path = folder / f"{name}.npy"
        np.save(path, array)
        shapes.append(f"{name}[{','.join(str(d) for d in array.shape)}]")
        files.append(f"{name}:{path}")
        types.append(f"{name}:{OV_TYPES[str(array.dtype)]}")
    return [
        str(tool), "-m", str(graph.path), "-d", "CPU", "-hint", "latency", "-infer_precision", "f32",
        "-shape", ",".join(shapes), "-i", *files, "-iop", ",".join(types), "-t", str(seconds),
        "-report_type", "no_counters", "-json_stats", "-report_folder", str(folder),
    ]


def _benchmark_app_round(argv: list[str], report: Path, seconds: int) -> Side:
    report.unlink(missing_ok=True)  # never read the previous round's numbers
    output = run_tool(argv, timeout_s=seconds + TOOL_STARTUP_TIMEOUT_S)
    result = read_benchmark_app_report(report, output)
    return Side(result.throughput_fps, result.median_ms)


def compare_with_bare_ort_loop(
    graph: "OnnxGraph", inputs: tuple["torch.Tensor", ...], model: str, *, rounds: int, seconds: int
) -> Parity:
    """Our ONNX Runtime session against `session.run` in a bare loop, same settings, feed and count."""
    session = _prepare("onnxruntime", graph, inputs)
    ours, theirs = [], []
    try:
        bare = _bare_ort_session(graph, session.info)
        feed = {meta.name: tensor.numpy() for meta, tensor in zip(bare.get_inputs(), inputs)}
        warm_up(lambda: bare.run(None, feed), WARMUP, perf_clock)
        for _ in range(rounds):
            side, calls = _our_round(session, inputs, seconds)
            ours.append(side)
            theirs.append(_bare_ort_round(bare, feed, calls))
    finally:
        session.close()
    return Parity("onnxruntime", model, "bare session.run loop", tuple(ours), tuple(theirs))


def _bare_ort_session(graph: "OnnxGraph", info: Mapping[str, Any]) -> "onnxruntime.InferenceSession":
    """A second InferenceSession with the settings our session recorded (its `info`), not ones we assume."""
    import onnxruntime as ort

    from aigcbench.backends.onnxruntime import EXECUTION_MODES, OPTIMIZATION_LEVELS

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, OPTIMIZATION_LEVELS[info["graph_optimization_level"]]
    )
    options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[info["execution_mode"]])
    for key, attribute in (("intra_op_threads", "intra_op_num_threads"), ("inter_op_threads", "inter_op_num_threads")):
        if isinstance(info[key], int):  # "ort-default" otherwise: leave ORT's own choice
            setattr(options, attribute, info[key])
    return ort.InferenceSession(str(graph.path), sess_options=options, providers=list(info["providers"]))


def _bare_ort_round(session: "onnxruntime.InferenceSession", feed: Mapping[str, Any], calls: int) -> Side:
    latencies: list[int] = []
    start = perf_clock()
    for _ in range(calls):
        t0 = perf_clock()
        session.run(None, feed)
        latencies.append(perf_clock() - t0)
    return _side(calls, perf_clock() - start, latencies)


def compare_with_onnxruntime_test(
    graph: "OnnxGraph", inputs: tuple["torch.Tensor", ...], model: str, *, rounds: int, seconds: int
) -> Parity:
    """Our ONNX Runtime session against `onnxruntime_test <model> <calls>`, as many calls as our round made."""
    tool = find_tool("onnxruntime_test", "pip install onnxruntime")
    session = _prepare("onnxruntime", graph, inputs)
    dims = ",".join(f"{name}={size}" for name, size in _symbolic_dims(graph, inputs).items())
    ours, theirs = [], []
    try:
        for _ in range(rounds):
            side, calls = _our_round(session, inputs, seconds)
            ours.append(side)
            argv = [str(tool), str(graph.path), str(calls), *(["--symbolic_dims", dims] if dims else [])]
            # The tool runs `calls` calls at the speed ours just did; 3× leaves room for a slower spell.
            output = run_tool(argv, timeout_s=3 * seconds + TOOL_STARTUP_TIMEOUT_S)
            theirs.append(Side(1e3 / read_onnxruntime_test_latency_ms(output), None))
    finally:
        session.close()
    return Parity("onnxruntime", model, "onnxruntime_test", tuple(ours), tuple(theirs))


def _symbolic_dims(graph: "OnnxGraph", inputs: tuple["torch.Tensor", ...]) -> dict[str, int]:
    """Each named dynamic dimension of the graph's inputs (`batch`) → its size in our inputs."""
    import onnx

    proto = onnx.load(str(graph.path), load_external_data=False)
    dims: dict[str, int] = {}
    for value, tensor in zip(proto.graph.input, inputs):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                dims[dim.dim_param] = int(tensor.shape[axis])
    return dims


def compare_with_torch_timer(
    module: "torch.nn.Module", inputs: tuple["torch.Tensor", ...], model: str, *, rounds: int, seconds: int
) -> Parity:
    """Our eager PyTorch session against `Timer.blocked_autorange` on the same module, inputs and threads."""
    import torch
    from torch.utils import benchmark

    session = _prepare("pytorch", module, inputs)  # eval, fp32, cpu: the module is unchanged and shared
    timer = benchmark.Timer(
        stmt="module(*inputs)", globals={"module": module, "inputs": inputs}, num_threads=torch.get_num_threads()
    )
    ours, theirs = [], []
    try:
        for _ in range(rounds):
            ours.append(_our_round(session, inputs, seconds)[0])
            with torch.inference_mode():
                measurement = timer.blocked_autorange(min_run_time=seconds)
            # `mean` is total timed seconds / calls: the reciprocal of throughput.
            theirs.append(Side(1 / measurement.mean, measurement.median * 1e3))
    finally:
        session.close()
    return Parity("pytorch", model, "torch.utils.benchmark", tuple(ours), tuple(theirs))


def _prepare(backend_name: str, model: "torch.nn.Module | OnnxGraph", inputs: tuple["torch.Tensor", ...]) -> Session:
    """A warmed-up session as `aigcbench run --scenario latency --batch-size 1 --precision fp32` makes it."""
    backend = registry.get(backend_name)
    reason = backend.available()
    if reason is not None:
        raise ReferenceUnavailable(f"backend {backend_name}: {reason}")
    context = PrepareContext(scenario="latency", batch_size=int(inputs[0].shape[0]))
    session = backend.prepare(model, inputs, "fp32", "cpu", {}, context)
    warm_up(_step(session, inputs), WARMUP, perf_clock)
    return session


def _step(session: Session, inputs: tuple["torch.Tensor", ...]) -> Callable[[], None]:
    """One measured call as the harness makes it: the call, then waiting for the device."""

    def step() -> None:
        session(*inputs)
        session.synchronize()

    return step


def _our_round(session: Session, inputs: tuple["torch.Tensor", ...], seconds: int) -> tuple[Side, int]:
    """One round of our loop; returns its side and how many calls it made."""
    result = measure(_step(session, inputs), StopRule(min_duration_s=seconds, min_iterations=MIN_CALLS), perf_clock)
    return _side(result.iterations, result.wall_ns, result.latencies_ns), result.iterations


def _side(calls: int, wall_ns: int, latencies_ns: Sequence[int]) -> Side:
    return Side(calls / (wall_ns / 1e9), percentile(sorted(latencies_ns), 50) / 1e6)
