"""This machine's real ceilings: GEMM FLOP/s per precision and memory copy bandwidth.

A datasheet peak may be unreachable (the Empirical Roofline Toolkit's lesson):
the planner's roofline should divide by what this machine actually sustains.
So `calibrate` runs the two kernels a roofline is made of and keeps the *best*
rate over repeated calls, as ERT does — the best call is the one least
disturbed by the rest of the machine, hence the closest to the ceiling::

    ceilings, notes = calibrate("cpu", duration_s=1.0)
    records = ceiling_records(ceilings, fingerprint(), git_commit(), torch.__version__)

* GEMM: a square n×n matmul per precision (fp32, bf16, fp16), 2n³ FLOPs a
  call. n starts small and doubles until one call is long enough for the clock
  to resolve it well; a device that finishes even the largest n too fast has
  its call repeated, and the samples are per matmul.
* Copy: `dst.copy_(src)` of a float32 buffer several times the last-level
  cache, so it streams from memory; a call moves 2 × nbytes (read + write).

The harness owns the clock (DESIGN.md principle 2): `calibrate` takes the clock
and the `Probe`s to time, so a test gives it a fake clock and a fake kernel and
checks the rate exactly. The records follow the ceiling-record contract: one
ordinary `Record` per ceiling, scenario "ceiling", so the store, history and
export handle them like any result — and the report leaves them out.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .clock import Clock, perf_clock
from .errors import BackendUnavailable, UserError
from .record import Record
from .stats import summarize

CEILING = "ceiling"  # the workload and scenario name of every ceiling record
GEMM_PRECISIONS = ("fp32", "bf16", "fp16")
GEMM_SIZES = tuple(512 * 2**i for i in range(5))  # 512 … 8192
# A call this long is timed to well under 0.1 % by a nanosecond clock, and on a
# GPU dwarfs the synchronisation that ends it; shorter calls are repeated.
TARGET_CALL_NS = 20_000_000
MIN_CALLS = 3
MAX_CALLS = 100_000
MAX_REPEATS = 10_000
# A reduced precision slower than half of fp32 has no matrix unit of its own:
# the library converts and computes in fp32 (or scalar code), so a planner must
# not assume the datasheet's bf16/fp16 peak for it.
EMULATION_RATIO = 0.5
CPU_COPY_BYTES = 256 * 2**20
GPU_COPY_BYTES = 2**30
CACHE_MULTIPLE = 4  # ERT: a working set ≥ 4× the last-level cache measures memory, not cache
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}

# make_call(size) prepares the tensors for one size and returns the call to time.
MakeCall = Callable[[int], Callable[[], Any]]


@dataclass(frozen=True)
class Probe:
    """One ceiling to measure: which kernel, at which sizes, and the work one call does.

    `sizes` are tried in order until a call takes `TARGET_CALL_NS` (the last one
    is used regardless); `work(size)` is FLOPs (gemm) or bytes moved (copy) per call.
    """

    kind: str  # "gemm" | "copy"
    precision: str
    sizes: tuple[int, ...]
    make_call: MakeCall
    work: Callable[[int], float]

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError(f"probe {self.name} needs at least one size")

    @property
    def name(self) -> str:
        return f"gemm-{self.precision}" if self.kind == "gemm" else self.kind


@dataclass(frozen=True)
class Ceiling:
    """One measured ceiling: the per-call seconds and the work of each call.

    `size` is the matrix side (gemm) or the buffer's bytes (copy); `call_s`
    holds one entry per timed call, divided by `repeats` when a call repeated
    the kernel, so every entry is the time of one kernel invocation.
    """

    kind: str
    precision: str
    device: str
    size: int
    work_per_call: float
    repeats: int
    call_s: tuple[float, ...]
    threads: int
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"gemm-{self.precision}" if self.kind == "gemm" else self.kind

    @property
    def unit(self) -> str:
        return "flop" if self.kind == "gemm" else "byte"

    @property
    def best_per_s(self) -> float:
        """The ceiling: the fastest call's rate (ERT keeps the maximum)."""
        return self.work_per_call / min(self.call_s)

    @property
    def median_per_s(self) -> float:
        """The typical rate: the work over the median call time."""
        return self.work_per_call / summarize(self.call_s).p50


# ----------------------------------------------------------------------------- input checks

def resolve_device(device: str) -> str:
    """`cpu` or `cuda:i` (`cuda` means `cuda:0`); refuses others (exit 2) and an absent GPU (exit 3)."""
    text = device.strip().lower()
    if text == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise UserError(f"--device {device!r}: calibrate measures cpu or cuda[:i]")
    import torch

    index = int(match.group(1) or 0)
    if not torch.cuda.is_available():
        raise BackendUnavailable(f"--device {device}: torch {torch.__version__} sees no CUDA device here")
    if index >= torch.cuda.device_count():
        raise BackendUnavailable(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return f"cuda:{index}"


def check_duration(duration_s: float) -> float:
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise UserError(f"--duration must be a positive number of seconds, got {duration_s}")
    return float(duration_s)


# ----------------------------------------------------------------------------- measuring

def calibrate(
    device: str,
    *,
    duration_s: float = 1.0,
    clock: Clock = perf_clock,
    probes: Sequence[Probe] | None = None,
    sync: Callable[[], Any] | None = None,
) -> tuple[list[Ceiling], list[str]]:
    """Measure every probe (the default ones: gemm per precision, then copy) on `device`.

    Returns the ceilings and notes for the user: a probe whose kernel raises
    (a precision the device cannot compute) gives a note instead of a ceiling.
    Reduced-precision GEMMs far below fp32 carry an "emulated" warning.
    """
    import torch

    probes = default_probes(device) if probes is None else probes
    sync = synchronizer(device) if sync is None else sync
    threads = torch.get_num_threads()
    ceilings, notes = [], []
    for probe in probes:
        try:
            ceilings.append(measure(probe, device, duration_s=duration_s, clock=clock, sync=sync, threads=threads))
        # A precision this device has no kernel for is an answer, not a crash: torch says so with a
        # RuntimeError ("addmm_impl_cpu_" not implemented for 'Half') or, from some dispatch keys,
        # a NotImplementedError. Anything else is a bug and propagates.
        except (RuntimeError, NotImplementedError) as exc:
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            notes.append(f"{probe.name}: not measured on {device}, the kernel raised: {first_line}")
    return flag_emulation(ceilings), notes


def measure(
    probe: Probe, device: str, *, duration_s: float, clock: Clock, sync: Callable[[], Any], threads: int
) -> Ceiling:
    """Find the size, warm up at it, then time calls for `duration_s` (at least `MIN_CALLS`)."""
    size, call, elapsed_ns = _fit_size(probe, clock, sync)
    # Too fast even at the largest size: repeat the kernel inside one timed call.
    repeats = min(MAX_REPEATS, max(1, math.ceil(TARGET_CALL_NS / max(elapsed_ns, 1))))
    timed = call if repeats == 1 else _repeated(call, repeats)
    timed()
    sync()
    samples_ns = time_calls(timed, duration_ns=round(duration_s * 1e9), clock=clock, sync=sync)
    return Ceiling(
        kind=probe.kind, precision=probe.precision, device=device, size=size,
        work_per_call=float(probe.work(size)), repeats=repeats,
        call_s=tuple(ns / repeats / 1e9 for ns in samples_ns), threads=threads,
    )


def time_calls(
    call: Callable[[], Any], *, duration_ns: int, clock: Clock, sync: Callable[[], Any], min_calls: int = MIN_CALLS
) -> list[int]:
    """Nanoseconds of each call, until `duration_ns` have passed and `min_calls` were made.

    `sync` runs before the clock is read after each call: a GPU kernel has only
    been queued when the call returns, and the clock must see it finish.
    """
    samples: list[int] = []
    start = clock()
    while len(samples) < MAX_CALLS:
        t0 = clock()
        call()
        sync()
        t1 = clock()
        samples.append(t1 - t0)
        if len(samples) >= min_calls and t1 - start >= duration_ns:
            break
    return samples


def _fit_size(probe: Probe, clock: Clock, sync: Callable[[], Any]) -> tuple[int, Callable[[], Any], int]:
    """The first size whose (warm) call takes `TARGET_CALL_NS`, else the last; with its call and time."""
    for size in probe.sizes:
        call = None  # let the previous size's tensors go before allocating the next
        call = probe.make_call(size)
        call()  # first call pays allocation and kernel selection: not timed
        sync()
        t0 = clock()
        call()
        sync()
        elapsed = clock() - t0
        if elapsed >= TARGET_CALL_NS:
            break
    return size, call, elapsed


def _repeated(call: Callable[[], Any], repeats: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(repeats):
            call()

    return run


def flag_emulation(ceilings: Iterable[Ceiling]) -> list[Ceiling]:
    """Warn on reduced-precision GEMMs slower than `EMULATION_RATIO` × fp32 (no native matrix unit)."""
    ceilings = list(ceilings)
    fp32 = next((c for c in ceilings if c.kind == "gemm" and c.precision == "fp32"), None)
    if fp32 is None:
        return ceilings
    flagged = []
    for c in ceilings:
        ratio = c.best_per_s / fp32.best_per_s if c.kind == "gemm" else 1.0
        if ratio < EMULATION_RATIO:
            warning = (f"emulated: {c.precision} GEMM reaches only {ratio:.2g}× of fp32: "
                       f"no native {c.precision} matrix unit on this device")
            c = dataclasses.replace(c, warnings=(*c.warnings, warning))
        flagged.append(c)
    return flagged


# ----------------------------------------------------------------------------- torch kernels

def default_probes(device: str) -> list[Probe]:
    """GEMM at each precision (fp32 first: the others are judged against it), then copy."""
    probes = [Probe("gemm", p, GEMM_SIZES, torch_gemm(p, device), lambda n: 2.0 * n**3) for p in GEMM_PRECISIONS]
    probes.append(Probe("copy", "fp32", (copy_buffer_bytes(device),), torch_copy(device), lambda b: 2.0 * b))
    return probes


def torch_gemm(precision: str, device: str) -> MakeCall:
    """make_call(n): an n×n @ n×n matmul into a preallocated output (no allocation in the timed call)."""
    import torch

    dtype = getattr(torch, DTYPES[precision])

    def make(n: int) -> Callable[[], Any]:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        return lambda: torch.matmul(a, b, out=out)

    return make


def torch_copy(device: str) -> MakeCall:
    """make_call(nbytes): dst.copy_(src) of float32 buffers; src is written so its pages are real."""
    import torch

    def make(nbytes: int) -> Callable[[], Any]:
        src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
        dst = torch.empty_like(src)
        return lambda: dst.copy_(src)

    return make


def synchronizer(device: str) -> Callable[[], Any]:
    if device.startswith("cuda"):
        import torch

        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def copy_buffer_bytes(device: str) -> int:
    """A buffer ≥ `CACHE_MULTIPLE` × the last-level cache, at most 1/8 of the memory (two buffers fit)."""
    if device.startswith("cuda"):
        import torch

        props = torch.cuda.get_device_properties(device)
        cache, memory, floor = getattr(props, "L2_cache_size", 0), props.total_memory, GPU_COPY_BYTES
    else:
        import psutil

        cache, memory, floor = host_llc_bytes(), psutil.virtual_memory().total, CPU_COPY_BYTES
    wanted = max(floor, CACHE_MULTIPLE * cache)
    return int(min(wanted, memory // 8)) // 4 * 4


def host_llc_bytes(cache_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """The largest cache CPU 0 reports (Linux sysfs: `index*/size` as "32768K"); 0 when unknown.

    Read from sysfs rather than `getconf`: in a VM the latter may report the
    host's figure, while sysfs shows the cache this guest is given.
    """
    sizes = []
    for entry in cache_dir.glob("index*/size"):
        match = re.fullmatch(r"(\d+)\s*([KMG]?)", entry.read_text().strip())
        if match:
            sizes.append(int(match.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[match.group(2)])
    return max(sizes, default=0)


# ----------------------------------------------------------------------------- records

def ceiling_records(
    ceilings: Iterable[Ceiling], environment: Mapping[str, Any], commit: str | None, torch_version: str
) -> list[Record]:
    return [ceiling_record(c, environment, commit, torch_version) for c in ceilings]


def ceiling_record(c: Ceiling, environment: Mapping[str, Any], commit: str | None, torch_version: str) -> Record:
    """The ceiling as an ordinary ok `Record` (the ceiling-record contract): a pure function of its inputs."""
    return Record(
        status="ok",
        workload={"name": CEILING, "family": CEILING, "size": c.kind, "unit": c.unit, "params": 0,
                  "param_bytes": 0, "flops_per_item": None, "calls_per_batch": {}, "config": {"n": c.size}},
        backend={"name": "pytorch", "version": torch_version, "device": c.device, "precision": c.precision,
                 "options": {"threads": c.threads}},
        scenario={"name": CEILING, "batch_size": 1},
        environment=dict(environment),
        metrics={"ceiling_per_s": c.best_per_s, "throughput_items_per_s": c.median_per_s,
                 "latency_s": summarize(c.call_s).as_dict(), "iterations": len(c.call_s)},
        samples={"latency_s": list(c.call_s)},
        warnings=c.warnings,
        labels={CEILING: c.name},
        config={"workload": CEILING, "backend": "pytorch", "size": c.kind, "device": c.device,
                "precision": c.precision, "scenario": CEILING, "batch_size": 1},
        metadata={"repeats_per_call": c.repeats, "work_per_call": c.work_per_call},
        git_commit=commit,
    )


def without_ceilings(records: Sequence[Record], selection: Any) -> list[Record]:
    """Drop ceiling records unless `selection` names scenario=ceiling: they are machine peaks, not a workload.

    Refuses (exit 2) a selection that held only ceiling records, saying how to ask for them.
    """
    if CEILING in selection.columns.get("scenario", ()):
        return list(records)
    kept = [r for r in records if r.scenario.get("name") != CEILING]
    if records and not kept:
        raise UserError("only ceiling records (aigcbench calibrate) match; they are this machine's peaks, "
                        "not a workload: add --where scenario=ceiling to report them")
    return kept
