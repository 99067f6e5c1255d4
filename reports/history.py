"""A metric over commits, per cell, with the change points where it stepped (`aigcbench history`).

Pure functions from records to a frozen `History`; rendering lives in
`reports/history_render.py`.

**Points.** Records are grouped by cell key (`select.cell_key`: same config,
same hardware). Within a cell, the records of one `commit` label are one
point: the median of their values, with the count (a commit measured three
times is one point, not three). A record without a `commit` label is a point
of its own, named by its run id. Points are ordered by `created_at` (a
commit's earliest record places it), never by insertion order: an imported
file may hold last month's records. Only `ok` records give values; a point
whose records are all invalid or failed is kept (and shown marked) but is
not part of the change-point input.

**Change points, and why this way.**

* Library: `ruptures`, the maintained, BSD-licensed reference implementation
  of the offline change-point methods (PELT, Binseg, kernel CPD), with no
  dependencies beyond numpy/scipy. apache-otava (Hunter's e-divisive) 0.8.0
  pins `numpy==2.2.*` and pulls cloud clients into the install; MongoDB's
  signal-processing-algorithms is e-divisive only and barely maintained.
* Method: PELT with a penalty, i.e. the *exact* minimiser of "sum of squared
  deviations from each segment's mean + penalty × number of change points".
  It finds any number of steps without being told how many, unlike Binseg,
  which is greedy. `ruptures.KernelCPD(kernel="linear")` is that same PELT
  search with the same l2 cost, implemented in C; `ruptures.Pelt(model="l2")`
  is pure Python, recomputes each segment's cost from scratch and grows
  quadratically with a series that has no change point (the common case), too
  slow for a store of 100 000 records.
* Scale-free input: the search runs on log(value), so a step is relative (a
  +15 % step looks the same at 10 ms and at 10 s), divided by a robust noise
  scale: the MAD of the first differences over √2. A step inflates only one
  difference, so the steps themselves barely move that scale. The scale is
  floored at 0.5 % (`NOISE_FLOOR`): below that, a constant series would turn
  rounding into steps.
* Penalty: `PENALTY × log(n)` on that unit-noise series (a BIC-type penalty,
  grown with the number of points so a long series does not collect steps
  by chance). With `PENALTY = 6` (and the confirmation below), series of 30
  or 200 points at 3 % relative noise get a change point in well under 1 %
  of series, while a 15 % step (5σ there) is placed at its commit almost
  always and an 8 % step is found most of the time.
* Confirmation: the MAD of a short series is itself noisy, and an
  underestimated scale makes noise look like steps. So every change point
  must also separate its two neighbouring segments by a Welch t-test on the
  log values at p < `ALPHA`; the least significant one is dropped and the
  rest re-tested until all pass. Welch uses each segment's own spread,
  independent of the MAD, and works with the shortest segments.
* Minimum segment: `MIN_SIZE = 3` points. A single bad run is an outlier, not
  a new level; three in a row are. A series shorter than 2 × `MIN_SIZE` gets
  no change point and a note saying so.
* The search covers the latest `MAX_SERIES` valued points of a cell (the
  exact search grows quadratically); older points are still listed, and the
  note says so.

Each change point reports the point where the new level starts ("after"),
the last valued point before it ("before"), the medians of the two
segments, the relative step (after / before − 1), the t-test's p-value, and
whether the step is a regression or an improvement by the metric's direction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

from ..bench.record import Record
from .metrics import Metric
from .select import cell_label, group_by_cell, normalise_timestamp

SCHEMA_VERSION = 1
MIN_SIZE = 3
PENALTY = 6.0
ALPHA = 0.01
NOISE_FLOOR = 0.005
MAX_SERIES = 5000

PointStatus = Literal["ok", "missing", "invalid", "failed"]
Kind = Literal["regression", "improvement"]
_HEX = re.compile(r"^[0-9a-fA-F]{8,}$")


@dataclass(frozen=True)
class Point:
    """One commit (or one unlabelled run) of a cell.

    `value` is the median of the ok records' values, None when none gave one;
    `status` is `ok`, `missing` (ok records without this metric), or the
    status of the records when none was ok (`invalid` before `failed`).
    """

    name: str
    commit: str | None
    created_at: str
    value: float | None
    count: int
    records: int
    status: PointStatus
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class Segment:
    """Points `start`..`end` (indices into the cell's points, inclusive) at one level, and its median."""

    start: int
    end: int
    median: float


@dataclass(frozen=True)
class ChangePoint:
    """A step of the metric between `before` and `after` (point names); `index` is `after`'s point index."""

    index: int
    before: str
    after: str
    before_commit: str | None
    after_commit: str | None
    median_before: float
    median_after: float
    relative_step: float | None
    p_value: float
    kind: Kind


@dataclass(frozen=True)
class CellHistory:
    """One cell's points in time order, its level segments, and the change points between them.

    `note` says why no change point could be searched (too few points) or
    that only the latest points were; `item` names the cell's unit of work.
    """

    key: str
    label: str
    points: tuple[Point, ...]
    segments: tuple[Segment, ...]
    change_points: tuple[ChangePoint, ...]
    note: str | None
    item: str = "item"

    @property
    def latest(self) -> Point | None:
        """The most recent point with a value."""
        return next((p for p in reversed(self.points) if p.value is not None), None)

    @property
    def regressions(self) -> int:
        return sum(c.kind == "regression" for c in self.change_points)

    @property
    def marked(self) -> int:
        """Points shown but not analysed (invalid, failed, or without this metric)."""
        return sum(p.value is None for p in self.points)


@dataclass(frozen=True)
class History:
    """Every cell's history of one metric, with the selection it was read from and the search's settings."""

    metric: str
    metric_label: str
    unit: str
    direction: str
    selection: str
    cells: tuple[CellHistory, ...]
    min_size: int = MIN_SIZE
    penalty: float = PENALTY
    alpha: float = ALPHA

    @property
    def change_points(self) -> int:
        return sum(len(c.change_points) for c in self.cells)

    @property
    def regressions(self) -> int:
        return sum(c.regressions for c in self.cells)

    @property
    def points(self) -> int:
        return sum(len(c.points) for c in self.cells)


def ranked(cells: Iterable[CellHistory]) -> list[CellHistory]:
    """Cells in the order a reader needs them: regressions, other change points, then the longest series."""
    return sorted(cells, key=lambda c: (-c.regressions, -len(c.change_points), -len(c.points), c.label, c.key))


# ----------------------------------------------------------------------------- analysis

def analyse(records: Iterable[Record], metric: Metric, *, selection: str = "all records") -> History:
    """The history of `metric` for every cell among `records` (cells ordered by label)."""
    cells = [cell_history(key, group, metric) for key, group in group_by_cell(records).items()]
    cells.sort(key=lambda c: (c.label, c.key))
    return History(metric.name, metric.label, metric.unit, metric.direction, selection, tuple(cells))


def cell_history(key: str, records: Sequence[Record], metric: Metric) -> CellHistory:
    """One cell's points, segments and change points."""
    points = points_of(records, metric)
    valued = [i for i, p in enumerate(points) if p.value is not None]
    window = valued[-MAX_SERIES:]
    values = [points[i].value for i in window]
    note = _note(len(valued), len(window))
    breaks = find_change_points(values)
    bounds = [0, *breaks, len(window)]
    medians = [_median(values[a:b]) for a, b in zip(bounds, bounds[1:]) if b > a]
    segments = tuple(
        Segment(window[a], window[b - 1], m) for (a, b), m in zip(zip(bounds, bounds[1:]), medians)
    )
    y = _transform(values)[0] if breaks else None
    changes = tuple(
        _change_point(points, window, values, y, bounds, j, metric) for j in range(1, len(bounds) - 1)
    )
    item = records[0].workload.get("unit") or "item"
    return CellHistory(key, cell_label(records[0]), tuple(points), segments, changes, note, item)


def _note(valued: int, window: int) -> str | None:
    if valued < 2 * MIN_SIZE:
        plural = "s" if valued != 1 else ""
        return f"{valued} point{plural} with a value: too few for change points (needs {2 * MIN_SIZE})"
    if window < valued:
        return f"change points searched in the latest {window} of {valued} points"
    return None


def _change_point(points: Sequence[Point], window: Sequence[int], values: Sequence[float], y: Any,
                  bounds: Sequence[int], j: int, metric: Metric) -> ChangePoint:
    """The `j`-th boundary of `bounds` (indices into `values`, the window's values; `y` their transform)."""
    left, right = values[bounds[j - 1]:bounds[j]], values[bounds[j]:bounds[j + 1]]
    before, after = points[window[bounds[j] - 1]], points[window[bounds[j]]]
    m_before, m_after = _median(left), _median(right)
    step = m_after / m_before - 1 if m_before else None
    worse = m_after > m_before if metric.direction == "lower" else m_after < m_before
    return ChangePoint(
        index=window[bounds[j]], before=before.name, after=after.name,
        before_commit=before.commit, after_commit=after.commit,
        median_before=m_before, median_after=m_after, relative_step=step,
        p_value=_separation(y[bounds[j - 1]:bounds[j]], y[bounds[j]:bounds[j + 1]]),
        kind="regression" if worse else "improvement",
    )


def points_of(records: Iterable[Record], metric: Metric) -> list[Point]:
    """One point per commit (or per unlabelled run), ordered by `created_at`."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        commit = record.labels.get("commit")
        groups.setdefault(f"c:{commit}" if commit else f"r:{record.run_id}", []).append(record)
    points = [_point(group, metric) for group in groups.values()]
    points.sort(key=lambda p: (p.created_at, p.name))
    return points


def _point(group: Sequence[Record], metric: Metric) -> Point:
    commit = group[0].labels.get("commit")
    ok = [r for r in group if r.status == "ok"]
    # Only ok records are read: an invalid record's latency measured something else.
    values = [v for v in (metric.value(r) for r in ok) if v is not None and math.isfinite(v)]
    if values:
        status: PointStatus = "ok"
    elif ok:
        status = "missing"
    else:
        status = "invalid" if any(r.status == "invalid" for r in group) else "failed"
    return Point(
        name=short_commit(commit) if commit else f"run {group[0].run_id[:7]}",
        commit=commit,
        created_at=min(normalise_timestamp(r.created_at) for r in group),
        value=_median(values) if values else None,
        count=len(values),
        records=len(group),
        status=status,
        run_ids=tuple(r.run_id for r in group),
    )


def short_commit(commit: str) -> str:
    """A git sha as its first 7 digits; any other commit label as written."""
    return commit[:7] if _HEX.match(commit) else commit


# ----------------------------------------------------------------------------- change points

def find_change_points(values: Sequence[float], *, min_size: int = MIN_SIZE, penalty: float = PENALTY,
                       alpha: float = ALPHA) -> list[int]:
    """Indices where a new level starts in `values` (each ≥ `min_size` from the ends and from each other).

    See the module docstring for the method; a series shorter than
    2 × `min_size` has none.
    """
    import numpy as np
    import ruptures

    n = len(values)
    if n < 2 * min_size:
        return []
    y, logged = _transform(values)
    scale = _noise_scale(y, logged)
    z = ((y - np.median(y)) / scale).reshape(-1, 1)
    search = ruptures.KernelCPD(kernel="linear", min_size=min_size, jump=1).fit(z)
    breaks = [int(b) for b in search.predict(pen=penalty * math.log(n))[:-1]]
    return _confirmed(y, breaks, alpha)


def _transform(values: Sequence[float]) -> tuple[Any, bool]:
    """log(values) when all are positive (steps become relative), else the values themselves; and which."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    positive = bool((array > 0).all())
    return (np.log(array) if positive else array), positive


def _noise_scale(y: Any, logged: bool) -> float:
    """Robust point-to-point noise: MAD of first differences / √2, floored (see `NOISE_FLOOR`)."""
    import numpy as np
    from scipy import stats

    scale = float(stats.median_abs_deviation(np.diff(y), scale="normal")) / math.sqrt(2)
    # On log values the floor is relative already; raw values (some ≤ 0) get it relative to their size.
    floor = NOISE_FLOOR if logged else NOISE_FLOOR * max(float(np.median(np.abs(y))), 1e-12)
    return max(scale, floor)


def _confirmed(y, breaks: list[int], alpha: float) -> list[int]:
    """Drop the least significant change point until every one separates its neighbours at p < alpha."""
    breaks = list(breaks)
    while breaks:
        bounds = [0, *breaks, len(y)]
        p_values = [_separation(y[bounds[j]:bounds[j + 1]], y[bounds[j + 1]:bounds[j + 2]])
                    for j in range(len(breaks))]
        worst = max(range(len(breaks)), key=p_values.__getitem__)
        if p_values[worst] < alpha:
            break
        del breaks[worst]
    return breaks


def _separation(left, right) -> float:
    """Two-sided Welch t-test p-value between two segments (1.0 when it is undefined, e.g. no spread)."""
    from scipy import stats

    import numpy as np

    left, right = np.asarray(left, dtype=float), np.asarray(right, dtype=float)
    if left.std() == 0 and right.std() == 0:
        return 0.0 if left.mean() != right.mean() else 1.0
    p = float(stats.ttest_ind(left, right, equal_var=False).pvalue)
    return p if math.isfinite(p) else 1.0


def _median(values: Sequence[float]) -> float:
    import statistics

    return float(statistics.median(values))
