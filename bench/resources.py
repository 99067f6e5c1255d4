"""A cell's memory limit: sizes as users write them, how a worker is held to it, how exceeding it is told.

`parse_memory_limit("8GiB", "--memory-limit")` → bytes. Units follow the
usual conventions: `KiB`/`MiB`/`GiB`/`TiB` are binary, `KB`/`MB`/`GB`/`TB`
decimal (SI), and a bare `K`/`M`/`G`/`T` is binary, as in `ulimit`, Docker and
systemd. A plain integer (or a string of digits) is bytes. Units are read
case-insensitively; fractions are allowed with a unit (`1.5GB`).

A limit above the machine's memory is accepted: it caps virtual address
space (RLIMIT_AS), which may rightly exceed physical memory, above it it simply
does not bind, and a sweep file may be parsed on one machine and run on a
bigger one. A worker needs ~750 MiB of address space for torch alone; a
smaller limit is accepted and gives a `failed` record saying it was exceeded.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Iterable

from .errors import UserError

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
    "g": 1024**3, "gib": 1024**3, "gb": 1000**3,
    "t": 1024**4, "tib": 1024**4, "tb": 1000**4,
}
# Spaces only (not \s): a newline inside a value is malformed, never silently accepted.
_PATTERN = re.compile(r" *([0-9]+(?:\.[0-9]*)?|\.[0-9]+) *([A-Za-z]*) *")
# Below this no Python interpreter starts (it maps ~30 MiB of address space before
# running a line), so a smaller limit could only ever produce a failed record.
MIN_MEMORY_LIMIT_BYTES = 64 * 1024**2
# setrlimit takes a signed 64-bit value; anything above is a typo, not a limit.
MAX_MEMORY_LIMIT_BYTES = 2**62
_BINARY_NAMES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def parse_memory_limit(value: object, where: str) -> int:
    """Bytes for a memory size such as `"8GiB"`, `"512MiB"`, `"1.5GB"`, `"2G"` or `4294967296`.

    `where` names the option or sweep-file key, for the message of the
    `UserError` raised on a malformed, non-finite or out-of-range value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(
            f"{where}: expected a memory size such as '8GiB' or a whole number of bytes, got {value!r}"
        )
    amount = value if isinstance(value, int) else _parse_text(value, where)
    if amount < MIN_MEMORY_LIMIT_BYTES:
        raise UserError(
            f"{where}: memory limit {value!r} is below the minimum {format_bytes(MIN_MEMORY_LIMIT_BYTES)}"
            " (a Python worker cannot start in less)"
        )
    if amount > MAX_MEMORY_LIMIT_BYTES:
        raise UserError(f"{where}: memory limit {value!r} is above the maximum {format_bytes(MAX_MEMORY_LIMIT_BYTES)}")
    return amount


def _parse_text(text: str, where: str) -> int:
    if text.strip().startswith("-"):
        raise UserError(f"{where}: memory limit {text!r} must be positive")
    match = _PATTERN.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise UserError(
            f"{where}: cannot read {text!r} as a memory size; write a number with a unit"
            " such as '8GiB', '512MiB', '1.5GB', '2G', or whole bytes"
        )
    number = match.group(1)
    if not unit and "." in number:
        raise UserError(f"{where}: {text!r} has a fraction of a byte; give a unit such as '1.5GiB' or whole bytes")
    amount = float(number) * _UNITS[unit] if "." in number else int(number) * _UNITS[unit]
    if not math.isfinite(amount):
        raise UserError(f"{where}: memory limit {text!r} is not a finite size")
    return int(round(amount))


def format_bytes(n: int) -> str:
    """`n` bytes in the largest binary unit it fills: `8 GiB`, `1.5 GiB`, `512 MiB`, `100 B`."""
    value, index = float(n), 0
    while abs(value) >= 1024 and index < len(_BINARY_NAMES) - 1:
        value /= 1024
        index += 1
    shown = f"{value:.2f}".rstrip("0").rstrip(".")
    return f"{shown} {_BINARY_NAMES[index]}"


# ------------------------------------------------------------- applying a limit to a worker

# How the limit is applied, as the record says it. RLIMIT_AS caps the worker's
# virtual address space: every mmap/brk beyond it fails with ENOMEM, so the
# worker sees a MemoryError or its allocator's own error at a deterministic
# point, instead of the kernel's OOM killer picking a victim later. It counts
# address space, not resident memory (torch maps more than it touches), so a
# limit must be generous. A cgroup v2 memory.max would count resident memory,
# but it needs a delegated cgroup with the memory controller, which an
# unprivileged process rarely has; RLIMIT_AS works for every process on Linux.
# A native library that retries a failed allocation forever would hang rather
# than fail (OpenBLAS does while it initialises: the worker loads it before the
# limit); a cell's timeout bounds any other such case.
MECHANISM = "rlimit_as"

# What a worker prints when an allocation fails under the limit: CPython, the
# C++ runtime, torch's CPU allocator, the dynamic loader, OpenMP, pthreads.
_OUT_OF_MEMORY = re.compile(
    r"\bMemoryError\b|std::bad_alloc|can't allocate memory|Cannot allocate memory"
    r"|failed to map segment from shared object|unable to allocate|can't start new thread"
    r"|Resource temporarily unavailable|out of memory|not enough memory",
    re.IGNORECASE,
)


def check_memory_limit(limit: int, device: str, where: str = "--memory-limit") -> None:
    """Refuse, in the parent, a limit this machine cannot apply to a worker on `device`."""
    if not sys.platform.startswith("linux"):
        raise UserError(f"{where}: memory limits need Linux (RLIMIT_AS); this is {sys.platform!r}")
    if device.split(":")[0] == "cuda":
        # The CUDA driver reserves far more address space than any sane limit
        # (unified addressing), so under RLIMIT_AS it cannot even initialise.
        raise UserError(
            f"{where}: a memory limit is applied as RLIMIT_AS (virtual address space), under which CUDA cannot"
            f" initialise; run device {device!r} without it"
        )
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY and limit > hard:
        raise UserError(
            f"{where}: memory limit {format_bytes(limit)} is above this process's hard RLIMIT_AS"
            f" {format_bytes(hard)}, which only root can raise"
        )


def limit_address_space(limit: int) -> None:
    """Apply `limit` (bytes) to this process and everything it starts; called first thing in the worker."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def out_of_memory(lines: Iterable[str]) -> bool:
    """Whether any of `lines` (a failure reason, a traceback, a worker's stderr) says an allocation failed."""
    return any(_OUT_OF_MEMORY.search(line) for line in lines if line)


def exceeded_reason(limit: int) -> str:
    """The reason of a cell that exceeded its limit: the same text every time, for compare and resume."""
    return f"exceeded memory limit {format_bytes(limit)}"


def check_fits(workload: str, size: str, batch: int, precision: str, device: str) -> None:
    """Refuse a batch whose memory floor already exceeds the device's memory, before anything is built.

    The floor is the cost model's (`reports/plan/costmodel.CostModel.memory_bytes`:
    weights at the precision plus twice the largest operator's activations),
    counted on the meta device for the preset and cached; a batch above it
    would only end, minutes later, as a failed allocation in the worker. A
    batch of one is not checked: no preset's weights come near a machine's
    memory, and the first count costs seconds. Devices without a known size
    (mps) are not checked.
    """
    if batch <= 1:
        return
    total = _device_memory(device)
    if total is None:
        return
    from ..reports.plan.costs import model_for

    floor = model_for(workload, size).memory_bytes(batch, precision)
    if floor > total:
        raise UserError(
            f"--batch-size {batch}: {workload} {size} at {precision} needs at least {format_bytes(floor)} "
            f"(weights plus twice its largest activation), more than the {format_bytes(total)} "
            f"{'this machine has' if device == 'cpu' else f'of {device}'}",
            key="batch_size")


def _device_memory(device: str) -> int | None:
    if device == "cpu":
        import psutil

        return int(psutil.virtual_memory().total)
    if device.startswith("cuda"):
        import torch

        index = int(device.partition(":")[2] or 0)
        return int(torch.cuda.get_device_properties(index).total_memory)
    return None
