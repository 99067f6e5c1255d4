"""Devices found rather than listed: GPUs matched by their NVML name, machines measured by `aigcbench calibrate`.

`match_gpu` maps the name NVML gives a GPU to its catalog entry (so a measured
GPU borrows its TDP and prices, and a catalog GPU its measured class);
`measured_entries` turns ceiling records into `HardwareSpec`s; `nearest_priced`
finds the catalog entry a machine without a price can borrow one from.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Iterable

from .catalog import CPU_VENDORS, PRECISIONS, Catalog, HardwareSpec

if TYPE_CHECKING:
    from ...bench.record import Record

# ------------------------------------------------------------ GPU names (NVML)

_GPU_NOISE = {"nvidia", "tesla", "geforce", "amd", "instinct", "radeon", "graphics"}
_FORMS = {"pcie": "pcie", "sxm": "sxm", "sxm2": "sxm", "sxm4": "sxm", "sxm5": "sxm", "nvl": "nvl"}
_MEMORY_TYPE = re.compile(r"^(hbm\d*e?|gddr\d*x?)$")
_MEMORY_SIZE = re.compile(r"^(\d+)gb$")
_MEMORY_TOLERANCE = 0.15  # NVML reports GiB-ish totals (80 GB = 81920 MiB); catalog memory is vendor GB


def _name_parts(text: str) -> tuple[frozenset[str], set[str], list[int]]:
    """(model tokens, form factors, sizes in GB) of a GPU name or catalog id."""
    tokens = [t for t in re.split(r"[^a-z0-9]+", text.lower()) if t and t not in _GPU_NOISE]
    forms = {_FORMS[t] for t in tokens if t in _FORMS}
    if "hbm3" in tokens:
        forms.add("sxm")  # NVML names the H100 SXM5 "H100 80GB HBM3"; the PCIe card is HBM2e and says PCIe
    sizes = [int(m.group(1)) for t in tokens if (m := _MEMORY_SIZE.match(t))]
    model = frozenset(t for t in tokens if t not in _FORMS and not _MEMORY_TYPE.match(t) and not _MEMORY_SIZE.match(t))
    return model, forms, sizes


def match_gpu(name: str, catalog: Catalog, *, memory_bytes: int | None = None) -> str | None:
    """The catalog id of the GPU NVML calls `name` ("NVIDIA H100 80GB HBM3" -> nvidia-h100-sxm), or None.

    A catalog GPU matches when its id has exactly the name's model tokens
    (vendor words, form factor and memory size/type aside: "L4" is not "L40S",
    "RTX 3090 Ti" is not "RTX 3090"), states no other form factor, and holds
    the GPU's memory (from the name's "80GB" or `memory_bytes`) within 15 %.
    When no entry or more than one remains, the answer is None: a wrong match
    would borrow the wrong power and price.
    """
    model, forms, sizes = _name_parts(name)
    memory = memory_bytes if memory_bytes else (sizes[0] * 2**30 if sizes else None)
    found = []
    for spec in catalog:
        if spec.kind != "gpu" or spec.origin == "measured":
            continue
        spec_model, spec_forms, _ = _name_parts(spec.id)
        if spec_model != model or (forms and spec_forms and not forms & spec_forms):
            continue
        if memory and spec.memory_bytes and abs(math.log(memory / spec.memory_bytes)) > _MEMORY_TOLERANCE:
            continue
        found.append(spec.id)
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------- measured

def measured_entries(records: Iterable["Record"], catalog: Catalog) -> list[HardwareSpec]:
    """This machine (and others in the store) as devices, from `aigcbench calibrate`'s ceiling records.

    One entry per hardware key and device kind: id = the ``hardware_key``
    (a machine with CUDA ceilings too gives its CPU entry ``KEY/cpu``). Only
    the newest record per (ceiling, precision) counts, so a recalibration
    replaces the last one: peaks are the best GEMM ``ceiling_per_s`` per
    precision, bandwidth the best copy rate. TDP and prices are unknown,
    except for a GPU that `match_gpu` finds in `catalog`.
    """
    groups: dict[tuple[str, str], list[Record]] = {}
    for record in records:
        if record.status != "ok" or record.workload.get("name") != "ceiling":
            continue
        kind = "cpu" if record.backend.get("device") == "cpu" else "gpu"
        groups.setdefault((str(record.environment.get("hardware_key") or "unknown"), kind), []).append(record)
    with_gpu = {key for key, kind in groups if kind == "gpu"}
    return [
        _measured_spec(f"{key}/cpu" if kind == "cpu" and key in with_gpu else key, kind, _newest(group), catalog)
        for (key, kind), group in sorted(groups.items())
    ]


def _newest(records: list["Record"]) -> list["Record"]:
    from ..select import normalise_timestamp

    def cell(record: Record) -> tuple[Any, Any]:
        return record.workload.get("size"), record.backend.get("precision")

    newest: dict[tuple[Any, Any], str] = {}
    for record in records:
        newest[cell(record)] = max(newest.get(cell(record), ""), normalise_timestamp(record.created_at))
    kept = [r for r in records if normalise_timestamp(r.created_at) == newest[cell(r)]]
    return sorted(kept, key=lambda r: normalise_timestamp(r.created_at))


def _measured_spec(spec_id: str, kind: str, records: list["Record"], catalog: Catalog) -> HardwareSpec:
    peaks: dict[str, float] = {}
    bandwidth: float | None = None
    emulated: set[str] = set()
    for record in records:
        rate, precision = record.metrics.get("ceiling_per_s"), record.backend.get("precision")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0 < rate < math.inf):
            continue
        if record.workload.get("size") == "copy":
            bandwidth = max(bandwidth or 0.0, float(rate))
        elif precision in PRECISIONS:
            peaks[precision] = max(peaks.get(precision, 0.0), float(rate))
            if any(str(w).startswith("emulated") for w in record.warnings):
                emulated.add(precision)
    identity = _identity(kind, records[-1], catalog)
    notes = [f"measured ceilings ({records[-1].backend.get('device')})"]
    if emulated:
        notes.append(f"emulated precisions: {', '.join(sorted(emulated))}")
    base = catalog.get(identity["gpu_catalog_id"]) if identity["gpu_catalog_id"] else None
    if base is not None:
        notes.append(f"TDP and prices from catalog entry {base.id}")
    elif kind == "gpu":
        notes.append(f"no catalog entry matches {identity['name']!r}: TDP and prices unknown")
    borrowed = {f: getattr(base, f) for f in ("tdp_w", "launch_price_usd", "cloud_usd_per_hour",
                                              "price_source_date")} if base else {}
    return HardwareSpec(
        id=spec_id, kind=kind, **identity, bandwidth_bytes_per_s=bandwidth, peaks=peaks, **borrowed,
        sources=tuple(f"measured by aigcbench calibrate, run {r.run_id} at {r.created_at}" for r in records),
        notes="; ".join(notes), origin="measured", measured_run_ids=tuple(r.run_id for r in records),
    )


def _identity(kind: str, record: "Record", catalog: Catalog) -> dict[str, Any]:
    """vendor, name, memory_bytes and gpu_catalog_id of the device a ceiling record measured."""
    env = record.environment
    if kind == "cpu":
        cpu = env.get("cpu") or {}
        cores = cpu.get("affinity_cores") or cpu.get("logical_cores")
        name = f"{cpu.get('model') or 'unknown CPU'}" + (f" ({cores} cores)" if cores else "")
        vendor = CPU_VENDORS.get(cpu.get("vendor"), cpu.get("vendor") or "")
        return dict(vendor=vendor, name=name, memory_bytes=_positive_int(env.get("memory_bytes")),
                    gpu_catalog_id=None)
    index = str(record.backend.get("device") or "").partition(":")[2]
    gpus = list(env.get("gpus") or [])
    gpu = next((g for g in gpus if str(g.get("index", 0)) == (index or "0")), gpus[0] if gpus else {})
    name, memory = gpu.get("name") or "unknown GPU", _positive_int(gpu.get("memory_bytes"))
    match = match_gpu(name, catalog, memory_bytes=memory)
    vendor = catalog.get(match).vendor if match else (name.split() or [""])[0]
    return dict(vendor=vendor, name=name, memory_bytes=memory, gpu_catalog_id=match)


def _positive_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def nearest_priced(spec: HardwareSpec, catalog: Catalog) -> HardwareSpec | None:
    """The priced catalog entry most like `spec`, to borrow a price from; None when there is none.

    Same kind and vendor, a launch or cloud price, and the smallest distance in
    log-ratio of (fp32 peak, bandwidth) over the numbers both have; an entry
    sharing both numbers beats one sharing only one.
    """
    mine = {"fp32": spec.peak_flops("fp32"), "bw": spec.bandwidth_bytes_per_s}
    best: tuple[int, float, HardwareSpec] | None = None
    for other in catalog:
        priced = other.cloud_usd_per_hour is not None or other.launch_price_usd is not None
        if (other.id == spec.id or other.origin == "measured" or not priced or other.kind != spec.kind
                or other.vendor.casefold() != spec.vendor.casefold()):
            continue
        theirs = {"fp32": other.peak_flops("fp32"), "bw": other.bandwidth_bytes_per_s}
        common = [k for k in mine if mine[k] and theirs[k]]
        if not common:
            continue
        distance = math.hypot(*(math.log(mine[k] / theirs[k]) for k in common))  # type: ignore[operator]
        if best is None or (-len(common), distance) < (best[0], best[1]):
            best = (-len(common), distance, other)
    return best[2] if best else None
