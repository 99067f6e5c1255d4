"""The hardware catalog: what each device can do on paper, and what this machine measured.

Three layers, a later one winning by ``device_id``: the packaged catalog
``data/hardware.csv`` (columns, units and caveats in ``data/README.md``: dense
peaks only, DERIVED marks, dated prices); an optional user file (``--catalog
FILE``) that adds devices or overrides some fields; and the entries
``aigcbench calibrate`` measured (`devices.measured_entries`), one per ``hardware_key``.
A `HardwareSpec` holds SI base units (bytes, bytes/s, FLOP/s, W, USD);
`HardwareSpec.to_dict` puts the catalog's units back into the key names.

A user file is CSV, a header naming ``device_id`` and any other columns (an
empty cell keeps the catalog's value)::

    device_id,cloud_usd_per_hour,price_source_date
    nvidia-l4,0.55,"our AWS contract, 2026-10"

or TOML, one ``[[device]]`` table per device with the same keys::

    [[device]]
    device_id = "nvidia-l4"
    cloud_usd_per_hour = 0.55

A known ``device_id`` has only the given columns overridden; a new one adds a
device and must give its ``kind``. A bad file is a `UserError` naming the file,
the line (CSV) or device (TOML), and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import io
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping

from ...bench.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pyproject depends on tomli there
    import tomli as tomllib  # type: ignore[no-redef]

PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")
KINDS = ("gpu", "cpu", "tpu", "fpga", "npu", "soc")
# CSV column -> precision; the int8 column is tera-*operations* per second.
PEAK_COLUMNS: Mapping[str, str] = MappingProxyType({
    "fp32_tflops": "fp32", "tf32_tflops": "tf32", "fp16_tflops": "fp16",
    "bf16_tflops": "bf16", "int8_tops": "int8", "fp8_tflops": "fp8",
})
COLUMNS = ("device_id", "vendor", "name", "kind", "memory_gb", "memory_bw_gbs", *PEAK_COLUMNS, "tdp_w",
           "launch_price_usd", "cloud_usd_per_hour", "price_source_date", "source_urls", "notes")
# Zero would divide a roofline by zero; a price of zero is a device already owned.
_POSITIVE = ("memory_gb", "memory_bw_gbs", *PEAK_COLUMNS, "tdp_w")
_NUMBERS = (*_POSITIVE, "launch_price_usd", "cloud_usd_per_hour")
_FIELDS = {"device_id": "id", "memory_gb": "memory_bytes", "memory_bw_gbs": "bandwidth_bytes_per_s",
           "source_urls": "sources"}
GIGA, TERA = 1e9, 1e12
CPU_VENDORS = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}

CATALOG_HELP = (
    "A .csv or .toml file of hardware entries with the catalog's columns (device_id plus any of the others, "
    "e.g. cloud_usd_per_hour) that add devices or override fields of the packaged catalog."
)


@dataclass(frozen=True)
class HardwareSpec:
    """One device: its peaks, memory, power and price, and where each came from.

    `peaks` maps a precision of `PRECISIONS` to a dense peak in FLOP/s (int8:
    op/s); a precision the device cannot run, or whose peak is unpublished, is
    absent. `origin` is the layer that last set the entry (``catalog``,
    ``file:PATH`` or ``measured``) and `sources` its references (for a file
    override, a last item names the overridden columns). A measured GPU's
    power and prices come from the catalog entry `gpu_catalog_id`.
    """

    id: str
    vendor: str
    name: str
    kind: str
    memory_bytes: int | None = None
    bandwidth_bytes_per_s: float | None = None
    peaks: Mapping[str, float] = field(default_factory=dict, hash=False)
    tdp_w: float | None = None
    launch_price_usd: float | None = None
    cloud_usd_per_hour: float | None = None
    price_source_date: str | None = None
    sources: tuple[str, ...] = ()
    notes: str = ""
    origin: str = "catalog"
    measured_run_ids: tuple[str, ...] = ()
    gpu_catalog_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.id}: kind {self.kind!r} is not one of {KINDS}")
        unknown = set(self.peaks) - set(PRECISIONS)
        if unknown:
            raise ValueError(f"{self.id}: unknown precisions {sorted(unknown)}")
        numbers = [self.memory_bytes, self.bandwidth_bytes_per_s, self.tdp_w, *self.peaks.values()]
        if any(value is not None and not value > 0 for value in numbers):
            raise ValueError(f"{self.id}: peaks, memory, bandwidth and TDP must be positive")
        object.__setattr__(self, "peaks", MappingProxyType(
            {p: float(self.peaks[p]) for p in PRECISIONS if p in self.peaks}))
        object.__setattr__(self, "sources", tuple(self.sources))
        object.__setattr__(self, "measured_run_ids", tuple(self.measured_run_ids))

    def __reduce__(self) -> tuple[Any, ...]:
        # A mappingproxy can be neither pickled nor deep-copied: rebuild from plain values instead.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _rebuild, ({**values, "peaks": dict(self.peaks)},)

    def peak_flops(self, precision: str) -> float | None:
        """The dense peak at `precision` in FLOP/s (op/s for int8), or None when unknown or unsupported."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
        return self.peaks.get(precision)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly, in the catalog's units: GB and GB/s (1e9), TFLOPS (1e12; int8 in TOPS), W, USD.

        Where each number comes from is `origin` plus `sources`.
        """
        return {
            "id": self.id, "vendor": self.vendor, "name": self.name, "kind": self.kind,
            "memory_gb": _scaled(self.memory_bytes, GIGA),
            "memory_bw_gbs": _scaled(self.bandwidth_bytes_per_s, GIGA),
            "peak_tflops": {p: _scaled(v, TERA) for p, v in self.peaks.items()},
            "tdp_w": self.tdp_w, "launch_price_usd": self.launch_price_usd,
            "cloud_usd_per_hour": self.cloud_usd_per_hour, "price_source_date": self.price_source_date,
            "sources": list(self.sources), "notes": self.notes, "origin": self.origin,
            "measured_run_ids": list(self.measured_run_ids), "gpu_catalog_id": self.gpu_catalog_id,
        }


def _rebuild(values: dict[str, Any]) -> HardwareSpec:
    return HardwareSpec(**values)


def _scaled(value: float | None, scale: float) -> float | None:
    # 12 significant digits undo the binary noise of the unit conversion (8.1e12 / 1e12).
    return None if value is None else float(f"{value / scale:.12g}")


class Catalog:
    """Hardware entries by id, in catalog order. Never changed in place: `with_entries` returns a new one."""

    def __init__(self, entries: Iterable[HardwareSpec] = ()) -> None:
        self._entries: Mapping[str, HardwareSpec] = MappingProxyType({e.id: e for e in entries})

    def get(self, device_id: str) -> HardwareSpec:
        """The entry `device_id`; a `UserError` naming the closest ids when there is none."""
        try:
            return self._entries[device_id]
        except KeyError:
            # A truncated id ("nvidia-h10") names its completions first; then what difflib finds alike.
            prefixed = [known for known in self._entries if known.startswith(device_id)]
            close = list(dict.fromkeys(prefixed + difflib.get_close_matches(device_id, list(self._entries), n=3)))[:3]
            if close:
                raise UserError(f"unknown hardware {device_id!r}; close: {', '.join(close)}") from None
            some = ", ".join(list(self._entries)[:5])
            raise UserError(f"unknown hardware {device_id!r}; known: {some}, ... "
                            f"({len(self)} in all: aigcbench list hardware)") from None

    def ids(self) -> list[str]:
        return list(self._entries)

    def with_entries(self, specs: Iterable[HardwareSpec]) -> "Catalog":
        """A catalog with `specs` added (at the end) or replacing the entries of the same id (in place)."""
        merged = dict(self._entries)
        merged.update((spec.id, spec) for spec in specs)
        return Catalog(merged.values())

    def __iter__(self) -> Iterator[HardwareSpec]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._entries

    def __reduce__(self) -> tuple[Any, ...]:
        return Catalog, (list(self),)


# ------------------------------------------------------------------ loading

def load_catalog(extra: Path | None = None) -> Catalog:
    """The packaged catalog, plus the devices and overrides of the user file `extra` (module docstring)."""
    catalog = _packaged()
    if extra is None:
        return catalog
    path = Path(extra)
    if not path.is_file():
        raise UserError(f"--catalog {path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".toml"):
        raise UserError(f"--catalog {path}: unknown format {path.suffix or '(none)'!r}; choose from .csv, .toml")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is not part of the first column
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--catalog {path}: cannot read it: {exc}") from None
    rows = _csv_rows(text, str(path)) if suffix == ".csv" else _toml_rows(text, str(path))
    return catalog.with_entries(_merge(rows, catalog, f"file:{path}"))


@functools.lru_cache(maxsize=1)
def _packaged() -> Catalog:
    text = resources.files(__package__).joinpath("data/hardware.csv").read_text(encoding="utf-8")
    return Catalog(_merge(_csv_rows(text, "hardware.csv"), Catalog(), "catalog"))


Row = tuple[Mapping[str, Any], Callable[[str], str]]  # cells by column, and "where" for a column's messages


def _csv_rows(text: str, path: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text))
    try:
        header = [cell.strip() for cell in next(reader, [])]
        if not header:
            raise UserError(f"{path}: empty file; expected a header row naming device_id")
        _check_columns(header, lambda column: f"{path} line 1, column {column}")
        if "device_id" not in header:
            raise UserError(f"{path} line 1: no device_id column")
        rows: list[Row] = []
        for cells in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                raise UserError(f"{path} line {line}: {len(cells)} cells, but the header names {len(header)} columns")
            rows.append((dict(zip(header, cells)), lambda column, line=line: f"{path} line {line}, column {column}"))
        return rows
    except csv.Error as exc:
        raise UserError(f"{path} line {reader.line_num}: {exc}") from None


def _toml_rows(text: str, path: str) -> list[Row]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message names the line and column
        raise UserError(f"{path}: TOML syntax error: {exc}") from None
    for key in data:
        if key != "device":
            raise UserError(f"{path}: unknown table [{key}]{_did_you_mean(key, ['device'])}; "
                            "write each device as a [[device]] table with a device_id key")
    devices = data.get("device", [])
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise UserError(f"{path}: 'device' must be [[device]] tables")
    rows: list[Row] = []
    for number, table in enumerate(devices, 1):
        name = table.get("device_id")
        label = f"device {name!r}" if isinstance(name, str) and name.strip() else f"device #{number}"
        where = functools.partial("{0} {1}, key {2}".format, path, label)
        _check_columns(list(table), where)
        rows.append((table, where))
    return rows


def _check_columns(columns: list[str], where: Callable[[str], str]) -> None:
    seen: set[str] = set()
    for column in columns:
        if column not in COLUMNS:
            raise UserError(f"{where(column)}: unknown column{_did_you_mean(column, COLUMNS)}")
        if column in seen:
            raise UserError(f"{where(column)}: the column appears twice")
        seen.add(column)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _merge(rows: list[Row], base: Catalog, origin: str) -> list[HardwareSpec]:
    """Each row as a new entry or an override of `base`'s; a device_id given twice is refused."""
    specs: dict[str, HardwareSpec] = {}
    for cells, where in rows:
        changes = _changes(cells, where)
        device_id = changes.pop("id", None)
        if not device_id:
            raise UserError(f"{where('device_id')}: missing device_id")
        if device_id in specs:
            raise UserError(f"{where('device_id')}: {device_id!r} is given twice")
        old = base.get(device_id) if device_id in base else None
        specs[device_id] = _new(device_id, changes, where, origin) if old is None \
            else _override(old, changes, cells, origin)
    return list(specs.values())


def _new(device_id: str, changes: dict[str, Any], where: Callable[[str], str], origin: str) -> HardwareSpec:
    if "kind" not in changes:
        raise UserError(f"{where('kind')}: {device_id!r} is not in the catalog, so it needs a kind "
                        f"({', '.join(KINDS)})")
    return HardwareSpec(id=device_id, vendor=changes.pop("vendor", ""), name=changes.pop("name", device_id),
                        origin=origin, **changes)


def _override(old: HardwareSpec, changes: dict[str, Any], cells: Mapping[str, Any], origin: str) -> HardwareSpec:
    given = [c for c, v in cells.items() if c != "device_id" and not _blank(v)]
    changes["peaks"] = {**old.peaks, **changes.get("peaks", {})}
    sources = changes.get("sources", old.sources)
    if given:
        sources = (*sources, f"{origin.removeprefix('file:')} sets {', '.join(given)}")
    return dataclasses.replace(old, **{**changes, "sources": sources, "origin": origin if given else old.origin})


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _changes(cells: Mapping[str, Any], where: Callable[[str], str]) -> dict[str, Any]:
    """The HardwareSpec fields a row gives, converted to SI units; blank cells give nothing."""
    changes: dict[str, Any] = {}
    peaks: dict[str, float] = {}
    for column, raw in cells.items():
        if _blank(raw):
            continue
        if column in PEAK_COLUMNS:
            peaks[PEAK_COLUMNS[column]] = _number(raw, column, where) * TERA
        elif column in _NUMBERS:
            value = _number(raw, column, where) * (GIGA if column in ("memory_gb", "memory_bw_gbs") else 1)
            changes[_FIELDS.get(column, column)] = round(value) if column == "memory_gb" else value
        elif column == "source_urls":
            items = raw if isinstance(raw, list) else str(raw).split(";")
            changes["sources"] = tuple(str(item).strip() for item in items if str(item).strip())
        elif column == "kind":
            changes["kind"] = _kind(raw, where)
        elif isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
            changes[_FIELDS.get(column, column)] = str(raw).strip()
        else:
            raise UserError(f"{where(column)}: expected text, got {raw!r}")
    if peaks:
        changes["peaks"] = peaks
    return changes


def _number(raw: Any, column: str, where: Callable[[str], str]) -> float:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise UserError(f"{where(column)}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where(column)}: {raw!r} is not a finite number")
    if column in _POSITIVE and value <= 0:
        raise UserError(f"{where(column)}: {raw!r} must be positive")
    if value < 0:
        raise UserError(f"{where(column)}: {raw!r} must not be negative")
    return value


def _kind(raw: Any, where: Callable[[str], str]) -> str:
    kind = str(raw).strip().lower()
    if kind not in KINDS:
        raise UserError(f"{where('kind')}: unknown kind {raw!r}{_did_you_mean(kind, KINDS)} "
                        f"(choose from {', '.join(KINDS)})")
    return kind
