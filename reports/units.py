"""Human-readable numbers for tables. Records keep SI base units; only rendering scales them."""

from __future__ import annotations


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value / 1e-9:.3g}ns"


def bytes_(value: float | None) -> str:
    if value is None:
        return "—"
    for scale, unit in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.0f}B"


def rate(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{count(value)} {unit}/s"


def count(value: float | None) -> str:
    if value is None:
        return "—"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"
