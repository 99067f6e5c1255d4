"""The registry of what a record measures: one `Metric` per number a reader may ask for.

Every table, chart, comparison, history and plan reads records through this
registry and nothing else digs into `record.metrics` by string (DESIGN.md,
principle 4). A metric knows its unit, which direction is better, how to read
its value from a record, where its raw samples are (when the value summarises a
distribution, so `compare` can test the distributions and not two numbers), and
how to show a value to a person.

Values are always in SI base units (seconds, bytes, joules, watts, items/s);
only `Metric.format` scales them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping, Sequence

from ..bench.errors import UserError
from ..bench.record import Record
from . import units

Direction = Literal["lower", "higher"]
Reader = Callable[[Record], "float | None"]
SampleReader = Callable[[Record], "Sequence[float] | None"]

# Cold start is reported by part; a chart stacks them in this order.
COLD_START_PARTS: tuple[str, ...] = ("build", "export", "prepare", "first_call")


@dataclass(frozen=True)
class Metric:
    """One measured quantity.

    `unit` is the base unit of the value (`s`, `items/s`, `B`, `J/item`, `W`,
    `FLOP/s`, `1` for a ratio); `direction` says whether lower or higher is
    better. `read` returns the value or None when the record does not carry it
    (a failed cell, a probe that could not measure). `samples`, when set,
    returns the raw per-call samples the value summarises, in the same unit and
    direction, or None for a record that has none.
    """

    name: str
    label: str
    unit: str
    direction: Direction
    read: Reader
    samples: SampleReader | None = None
    description: str = ""

    def value(self, record: Record) -> float | None:
        """The value, or None; a reader that meets a malformed record says None rather than raising."""
        try:
            value = self.read(record)
        except (KeyError, TypeError, AttributeError, ZeroDivisionError):
            return None
        return float(value) if value is not None else None

    def raw(self, record: Record) -> list[float]:
        """The raw samples behind the value (empty when the metric has none or the record lacks them)."""
        if self.samples is None:
            return []
        try:
            values = self.samples(record)
        except (KeyError, TypeError, AttributeError, ZeroDivisionError):
            return []
        return [float(v) for v in values or ()]

    def better(self, a: float, b: float) -> bool:
        """Whether value `a` is strictly better than `b`."""
        return a < b if self.direction == "lower" else a > b

    def format(self, value: float | None, item: str = "item") -> str:
        """A value for a person: scaled, with its unit (`item` names the unit of work, e.g. image)."""
        if value is None:
            return "—"
        return _FORMATTERS[self.unit](value, item)


def _seconds(value: float, item: str) -> str:
    return units.seconds(value)


def _rate(value: float, item: str) -> str:
    return units.rate(value, item)


def _bytes(value: float, item: str) -> str:
    return units.bytes_(value)


def _per_item_j(value: float, item: str) -> str:
    return f"{value:.3g} J/{item}"


def _watts(value: float, item: str) -> str:
    return f"{value:.3g} W"


def _flops(value: float, item: str) -> str:
    return f"{units.count(value)}FLOP/s"


def _ratio(value: float, item: str) -> str:
    return f"{value:.2g}"


_FORMATTERS: dict[str, Callable[[float, str], str]] = {
    "s": _seconds, "items/s": _rate, "B": _bytes, "J/item": _per_item_j, "W": _watts, "FLOP/s": _flops, "1": _ratio,
}


# ----------------------------------------------------------------------------- readers

def _metrics(record: Record) -> Mapping[str, Any]:
    return record.metrics or {}


def _latency(key: str) -> Reader:
    return lambda r: (_metrics(r).get("latency_s") or {}).get(key)


def _latency_samples(record: Record) -> Sequence[float] | None:
    return (record.samples or {}).get("latency_s")


def is_open_loop(record: Record) -> bool:
    """A server run: its latencies include queueing, so they are not per-call service times."""
    return "server" in _metrics(record) or (record.scenario or {}).get("name") == "server"


def _throughput_samples(record: Record) -> Sequence[float] | None:
    # Items per call over each call's time: the per-call rate whose distribution the loop's rate summarises.
    if is_open_loop(record):
        return None
    items = ((record.scenario or {}).get("batch_size") or 1) * _units_per_row(record)
    return [items / s for s in _latency_samples(record) or () if s > 0]


def _units_per_row(record: Record) -> float:
    """Units of work one batch row yields (1 image; new_tokens tokens; a clip's seconds); 1 in older records."""
    return float((record.workload or {}).get("units_per_row") or 1)


def _component(record: Record) -> tuple[str, Mapping[str, Any]] | None:
    """The component called most often per batch (a diffusion pipeline's denoiser), if any was timed."""
    components = _metrics(record).get("component_latency_s") or {}
    if not components:
        return None
    calls = {name: (c or {}).get("calls_per_batch") or 0
             for name, c in ((record.workload or {}).get("components") or {}).items()}
    # Older records list the repeated component alone, first; max() keeps the first of equals.
    return max(components.items(), key=lambda item: calls.get(item[0], 0))


def _summary(key: str, stat: str) -> Reader:
    """A statistic of a summary a workload adds (`ttft_s`: {p50, p90, p99, ...})."""
    return lambda r: (_metrics(r).get(key) or {}).get(stat)


def _summary_samples(key: str) -> SampleReader:
    """The per-call samples of the component a workload's summary is of (its `component` field)."""
    def read(record: Record) -> Sequence[float] | None:
        component = (_metrics(record).get(key) or {}).get("component")
        return ((record.samples or {}).get("component_latency_s") or {}).get(component)

    return read


def _train_throughput(record: Record) -> float | None:
    """Training samples per second: the throughput of a `--mode train` record, None for inference."""
    if (record.workload or {}).get("mode") != "train":
        return None
    return _metrics(record).get("throughput_items_per_s")


def _step_p50(record: Record) -> float | None:
    found = _component(record)
    return found[1].get("p50") if found else None


def _step_samples(record: Record) -> Sequence[float] | None:
    found = _component(record)
    return ((record.samples or {}).get("component_latency_s") or {}).get(found[0]) if found else None


def _cold(part: str) -> Reader:
    return lambda r: (_metrics(r).get("cold_start_s") or {}).get(part)


def _plain(key: str) -> Reader:
    return lambda r: _metrics(r).get(key)


def _device_memory(record: Record) -> float | None:
    """What the device gave this process: NVML's view when read, else PyTorch's reserved peak."""
    m = _metrics(record)
    process = m.get("device_memory_process_bytes")
    return process if process is not None else m.get("peak_device_memory_reserved_bytes")


def _fidelity(record: Record) -> float | None:
    return (_metrics(record).get("fidelity") or {}).get("max_rel_error")


def _device_latency_p50(record: Record) -> float | None:
    return (_metrics(record).get("device_latency_s") or {}).get("p50")


def _device_latency_samples(record: Record) -> Sequence[float] | None:
    return (record.samples or {}).get("device_latency_s")


def _search_tolerance(record: Record) -> float | None:
    return ((_metrics(record).get("server") or {}).get("search") or {}).get("tolerance")


def _latency_metric(key: str, label: str, description: str) -> Metric:
    return Metric(f"latency_{key}_s", label, "s", "lower", _latency(key), _latency_samples, description)


# What one kind of workload adds (its `metric_extras`): a text decoder's first-token and per-token latency
# and its token rate, a vocoder's real-time factor, training's sample rate.
_WORKLOAD_METRICS: tuple[Metric, ...] = (
    *(Metric(f"ttft_{stat}_s", f"{stat} time to first token", "s", "lower", _summary("ttft_s", stat),
             _summary_samples("ttft_s"), f"{stat} latency of the prefill call: the wait for a batch's first token")
      for stat in ("p50", "p90", "p99")),
    *(Metric(f"tpot_{stat}_s", f"{stat} time per output token", "s", "lower", _summary("tpot_s", stat),
             _summary_samples("tpot_s"), f"{stat} latency of one decode step (one more token for every row)")
      for stat in ("p50", "p90", "p99")),
    Metric("tokens_per_s", "tokens/s", "items/s", "higher", _plain("tokens_per_s"), None,
           "output tokens generated per second over the loop, prefill included"),
    Metric("real_time_factor", "real-time factor", "1", "lower", _plain("real_time_factor"), None,
           "median call latency over the seconds of audio a row yields; < 1 is faster than real time"),
    Metric("real_time_factor_p99", "p99 real-time factor", "1", "lower", _plain("real_time_factor_p99"), None,
           "p99 call latency over the seconds of audio a row yields"),
    Metric("train_samples_per_s", "train samples/s", "items/s", "higher", _train_throughput, _throughput_samples,
           "training samples per second, one optimizer step per batch (--mode train records only)"),
)


_ALL: tuple[Metric, ...] = (
    _latency_metric("p50", "p50 latency", "median latency of one call (one batch); nearest rank"),
    _latency_metric("p90", "p90 latency", "90th percentile latency; nearest rank"),
    _latency_metric("p95", "p95 latency", "95th percentile latency; nearest rank"),
    _latency_metric("p99", "p99 latency", "99th percentile latency; nearest rank"),
    _latency_metric("mean", "mean latency", "arithmetic mean latency"),
    Metric("latency_es_p90_s", "p90 ES bound", "s", "lower", _latency("early_stopping_p90"), None,
           "MLPerf's early-stopping bound: the p90 claimable at 99 % confidence"),
    Metric("latency_es_p99_s", "p99 ES bound", "s", "lower", _latency("early_stopping_p99"), None,
           "MLPerf's early-stopping bound: the p99 claimable at 99 % confidence"),
    Metric("throughput_items_per_s", "throughput", "items/s", "higher", _plain("throughput_items_per_s"),
           _throughput_samples, "items completed over the loop's wall time"),
    Metric("capacity_items_per_s", "capacity under SLO", "items/s", "higher", _plain("capacity_items_per_s"), None,
           "highest Poisson arrival rate whose p99 meets the SLO (server scenario)"),
    Metric("capacity_search_tolerance", "capacity search tolerance", "1", "lower", _search_tolerance, None,
           "relative width the capacity search stops at: capacities closer than this are not told apart"),
    Metric("cold_start_total_s", "cold start", "s", "lower", _cold("total"), None,
           "build + export + prepare + first call"),
    *(Metric(f"cold_start_{part}_s", f"cold start: {part.replace('_', ' ')}", "s", "lower", _cold(part), None,
             f"the {part.replace('_', ' ')} part of cold start") for part in COLD_START_PARTS),
    Metric("peak_host_memory_bytes", "peak host memory", "B", "lower", _plain("peak_host_memory_bytes"), None,
           "peak resident set over the measured region"),
    Metric("peak_device_memory_bytes", "peak device memory", "B", "lower", _device_memory, None,
           "device memory held by the process (NVML), else PyTorch's reserved peak"),
    Metric("energy_j_per_item", "energy per item", "J/item", "lower", _plain("energy_j_per_item"), None,
           "energy over the measured region per item, from the named source"),
    Metric("mean_power_w", "mean power", "W", "lower", _plain("mean_power_w"), None,
           "energy over the measured region divided by its duration"),
    Metric("fidelity_max_rel_error", "fidelity error", "1", "lower", _fidelity, None,
           "worst per-item relative L2 error against eager PyTorch fp32"),
    Metric("step_latency_p50_s", "per-step latency", "s", "lower", _step_p50, _step_samples,
           "median latency of one call of the repeated component (the denoiser)"),
    Metric("device_latency_p50_s", "device latency", "s", "lower", _device_latency_p50, _device_latency_samples,
           "median device time of one call (CUDA events)"),
    Metric("achieved_flops_per_s", "achieved FLOP/s", "FLOP/s", "higher", _plain("achieved_flops_per_s"), None,
           "counted model FLOPs per item times throughput"),
    *_WORKLOAD_METRICS,
)

METRICS: dict[str, Metric] = {m.name: m for m in _ALL}

# What `compare` and `history` gate on unless told otherwise.
DEFAULT_COMPARE: tuple[str, ...] = ("latency_p50_s", "throughput_items_per_s")
DEFAULT_HISTORY = "latency_p50_s"


def get(name: str) -> Metric:
    """The metric called `name`; a `UserError` listing the known names otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise UserError(f"unknown metric {name!r}; known: {', '.join(METRICS)}") from None


def headline(record: Record) -> Metric:
    """The number that ranks a record: capacity for a server search, throughput offline, else p50 latency."""
    if METRICS["capacity_items_per_s"].value(record) is not None:
        return METRICS["capacity_items_per_s"]
    if (record.scenario or {}).get("name") == "throughput":
        return METRICS["throughput_items_per_s"]
    return METRICS["latency_p50_s"]
