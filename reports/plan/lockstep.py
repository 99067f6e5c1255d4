"""The simulation engine behind `queueing`: many configurations and stream segments in lockstep numpy lanes.

How it is fast without a Python object per query: configurations run side by
side in numpy arrays (lanes), one batch per step, and each query stream is
also cut into segments that run as further lanes. A segment first assumes an
empty system at its start; then each segment whose assumed start differs from
its predecessor's end state is rerun from that state, until none differs — a
fixed point that is the sequential simulation bit for bit (each pass makes at
least one more segment exact), reached in two or three passes because a queue
forgets its start within a busy period. A rerun stops where it meets its old
run (same head, dispatch time and key). Under heavy load a single server's busy
stretch is computed many batches at a time (`_burst`): there the keys run in
order, so dispatch times are a cumulative sum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...bench.errors import UserError

P_TAIL = 99.0  # the percentile an SLO is stated at
_LANES = 4096  # lanes the lockstep loop aims to keep in flight
_CELLS = 1 << 16  # lanes × servers, at most (an argmin over the servers runs per step)
_MIN_SEGMENT = 256  # queries per segment, at least: shorter ones rarely forget their start
_CHECK_EVERY = 16  # steps between drops of finished lanes
_BURST, _BURST_CELLS = 64, 1 << 13  # batches computed at once per lane in a busy stretch; lanes × batches


@dataclass(frozen=True, eq=False)
class SimResult:
    """One configuration's simulated run; latency statistics over the queries after the warm-up."""

    rate_qps: float
    max_batch: int
    servers: int
    stable: bool  # offered load < servers × B / mean service; otherwise the queue grows without bound
    p50_s: float
    p99_s: float  # inf when not stable
    mean_latency_s: float
    mean_wait_s: float  # dispatch − arrival: queueing plus the batching wait
    utilisation: float  # busy time / (servers × measured span)
    mean_batch: float  # real queries per batch
    latencies_s: np.ndarray = field(repr=False)  # by arrival order, warm-up left out


def _streams(seed: int, n: int, arrivals: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Unit-rate arrival times (or the given ones) and the uniforms that pick service samples."""
    rng = np.random.default_rng(seed)
    e = np.cumsum(rng.exponential(1.0, n)) if arrivals is None else arrivals
    return e, rng.random(n)


def _table(sets: list[np.ndarray], u: np.ndarray, sequence: bool) -> np.ndarray:
    """Per job, the service time of each key: resampled draws, or the given sequence (key = batch ordinal)."""
    table = np.full((len(sets), len(u)), np.nan)
    for j, s in enumerate(sets):
        if sequence:
            table[j, : len(s)] = s[: len(u)]
        else:
            table[j] = s[np.minimum((u * len(s)).astype(np.intp), len(s) - 1)]
    return table


def _dispatches(e, table, scale, bm, wu, c, sequence):
    """Each job's dispatch and completion time at every batch head (by query index), and the true heads.

    Lanes are (job, segment) pairs, and every run stamps the heads it writes;
    a segment's stamp says which run's heads count there. With one server a
    rerun goes on past its segment, through segments already consistent,
    until it meets a run whose heads count (a batch at the same head, time and
    service key: the same future from there on) or the next segment being rerun; the
    segments it covered take its stamp; after the second pass only the first
    wrong segment of each job is rerun, on to the end (what is still wrong
    then is a chain). With more servers a rerun covers its own segment.
    """
    jobs_n, n = table.shape
    bpow, cmax = 1 << int(bm.max() - 1).bit_length(), int(c.max())
    e_pad = np.concatenate([e, np.full(bpow, np.inf)])
    per_job = max(1, min(_LANES, _CELLS // cmax) // jobs_n)
    seg = n if sequence else max(_MIN_SEGMENT, 4 * bpow, 8 * cmax, -(-n // per_job))
    count = -(-n // seg)
    width = count * seg + 1  # a row per job: its queries, then one slot finished lanes write to
    D, C = np.zeros(jobs_n * width), np.zeros(jobs_n * width)
    K, stamp = np.zeros(jobs_n * width, np.int32), np.zeros(jobs_n * width, np.int32)
    blocks = stamp.reshape(jobs_n, width)[:, :-1].reshape(jobs_n, count, seg)
    ctx = (e_pad, np.append(table.ravel(), np.nan), D, C, K, stamp, bpow, sequence, n, width, seg, scale, bm, wu)
    jobs, segs = np.repeat(np.arange(jobs_n), count), np.tile(np.arange(count), jobs_n)
    h = segs * seg
    f = np.where(np.arange(cmax) < c[jobs, None], -np.inf, np.inf)
    f, k = _canonical(e_pad, h, f, np.zeros_like(h), wu[jobs], bm[jobs])
    k = np.zeros_like(h) if sequence else k  # in order: key = batch ordinal (one segment)
    state = [a.reshape(jobs_n, count, -1).squeeze(-1) if a.ndim == 1 else a.reshape(jobs_n, count, -1)
             for a in (h, f, k)]
    start, sid = [a.copy() for a in state], (segs + 1).reshape(jobs_n, -1)
    end = [a.reshape(state[i].shape) for i, a in enumerate(_run(ctx, jobs, h, np.minimum(h + seg, n), f, k,
                                                                 segs + 1, None)[:3])]
    for rerun in range(1, count):
        pf, pk = _canonical(e_pad, end[0][:, :-1].ravel(), end[1][:, :-1].reshape(-1, cmax), end[2][:, :-1].ravel(),
                            np.repeat(wu, count - 1), np.repeat(bm, count - 1))
        pf, pk = pf.reshape(jobs_n, count - 1, cmax), pk.reshape(jobs_n, count - 1)
        wrong = (end[0][:, :-1] != start[0][:, 1:]) | (pf != start[1][:, 1:]).any(-1) | (pk != start[2][:, 1:])
        jj, ss = np.nonzero(wrong)
        if not len(jj):
            break
        ss += 1
        upto = ss + 1  # segments a rerun may cover: up to the next one rerun in this pass
        if rerun > 1 and cmax == 1:
            lowest = np.append(True, jj[1:] != jj[:-1])
            jj, ss, upto = jj[lowest], ss[lowest], np.full(lowest.sum(), count)
        elif cmax == 1:
            upto = np.where(np.append(jj[1:] == jj[:-1], False), np.append(ss[1:], 0), count)
        for i, a in enumerate((end[0][jj, ss - 1], pf[jj, ss - 1], pk[jj, ss - 1])):
            start[i][jj, ss] = a
        new = rerun * count + ss + 1
        eh, ef, ek, met = _run(ctx, jj, start[0][jj, ss], np.minimum(upto * seg, n), start[1][jj, ss],
                               start[2][jj, ss], new, np.append(sid.ravel(), -1) if cmax == 1 else None)
        m, r = met >= 0, met // seg
        if m.any():  # the met segment: the new run's heads before the meeting, the old run's after
            part, sr = blocks[jj[m], r[m]], sid[jj[m], r[m], None]
            before = np.arange(seg) < (met[m] - r[m] * seg)[:, None]
            blocks[jj[m], r[m]] = np.where(before & (part == new[m, None]), sr,
                                           np.where(before & (part == sr), 0, part))
        i, t = _spans(ss, np.where(m, r, upto))
        sid[jj[i], t] = new[i]
        i, t = _spans(ss + 1, np.where(m, r + 1, upto))  # boundaries inside a run: consistent by construction
        for a, b_, v in ((start, t, t * seg), (end, t - 1, t * seg)):
            a[0][jj[i], b_], a[1][jj[i], b_], a[2][jj[i], b_] = v, np.inf, -1
        for a, v in zip(end, (eh, ef, ek)):
            a[jj[~m], upto[~m] - 1] = v[~m]
    lengths = np.diff(np.concatenate([start[0], np.full((jobs_n, 1), n)], axis=1)).ravel()
    valid = stamp.reshape(jobs_n, width)[:, :n] == np.repeat(sid.ravel(), lengths).reshape(jobs_n, n)
    return D.reshape(jobs_n, width)[:, :n], C.reshape(jobs_n, width)[:, :n], valid


def _spans(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, t) with lo[i] <= t < hi[i], flattened."""
    lens = np.maximum(hi - lo, 0)
    i = np.repeat(np.arange(len(lo)), lens)
    return i, np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens) + lo[i]


def _canonical(e_pad, h, f, k, wu, bm):
    """A lane's state as passes compare it: free times before the next batch is ready are all alike,
    and the next service key matters only if that batch will start busy."""
    ready = np.minimum(e_pad[h] + wu, e_pad[h + bm - 1])
    f = np.sort(np.maximum(f, ready[:, None]), axis=1)
    return f, np.where(f[:, 0] > ready, k, -1)


def _run(ctx, jobs, h, stop, f, k, sid, prev):
    """Advance every lane one batch per step until its next head reaches its stop (or it meets `prev`'s run).

    A batch dispatched busy (its server freed after it was ready) takes service
    key k, the next key of the stretch; an idle one starts a stretch with key =
    its head. Keys never repeat, so service times stay iid, and inside a busy
    stretch they run in order, which is what lets `_burst` compute many batches
    at once. Returns end heads, free times, next keys, and where each lane met
    its previous run (-1: it did not).
    """
    e_pad, table, D, C, K, stamp, bpow, sequence, n, width, seg, scale, bm, wu = ctx
    out, single = [h.copy(), f.copy(), k.copy(), np.full(len(h), -1)], f.shape[1] == 1
    lanes = [np.arange(len(h)), h.copy(), stop.copy(), f[:, 0].copy() if single else f.copy(), k.copy(),
             np.full(len(h), -1), sid.astype(np.int32), jobs * width, jobs * n, scale[jobs], bm[jobs] - 1, bm[jobs],
             wu[jobs], jobs * (-(-n // seg)), np.zeros_like(h)]
    reach, steps = 8, 0
    while len(lanes[0]):
        ids, h, stop, f, k, met, sid, base, row, sc, bm1, b, w, first, streak = lanes
        ar, trash = np.arange(len(h)), base + width - 1
        # Bursts pay only when most lanes are in long busy stretches: the slowest lane sets the steps.
        bursting = single and 2 * np.count_nonzero(streak >= 6) >= len(streak)
        for _ in range(_CHECK_EVERY):
            act, steps = h < stop, steps + 1
            j = 0 if single else f.argmin(1)
            fmin = f if single else f[ar, j]
            ready = np.minimum(e_pad[h] + w, e_pad[h + bm1])
            idle = fmin <= ready
            d = np.maximum(fmin, ready)
            key = k if sequence else np.where(idle, h, k)
            if prev is not None:
                here = base + h
                same = act & (stamp[here] == prev[first + h // seg]) & (D[here] == d) & (K[here] == key)
                met, stop = np.where(same, h, met), np.where(same, h, stop)
                act &= ~same
            done = d + table[row + key] * sc
            slot = np.where(act, base + h, trash)  # a finished lane writes where nobody reads
            D[slot], C[slot], K[slot], stamp[slot] = d, done, key, sid
            if single:
                f = np.where(act, done, f)
            else:
                f[ar, j] = np.where(act, done, fmin)
            h, k = h + _count(e_pad, h, d, bpow, b) * act, np.where(act, key + 1, k)
            go = np.flatnonzero(act & ~idle & (h < stop)) if bursting or (single and steps % 16 == 0) else ()
            if len(go):
                k0 = k[go]
                h[go], f[go], k[go] = _burst(ctx, h[go], f[go], k0, stop[go], reach,
                                             (sid[go], base[go], row[go], sc[go], bm1[go], b[go], w[go]))
                streak[go] = k[go] - k0
                reach = int(np.clip(2 * streak[go].mean() + 2, 4, _BURST))
        act = h < stop
        lanes = [ids, h, stop, f, k, met, sid, base, row, sc, bm1, b, w, first, streak]
        if not act.all():
            gone = ids[~act]
            for o, a in zip(out, (h, f.reshape(len(h), -1), k, met)):
                o[gone] = a[~act]
            lanes = [a[act] for a in lanes]
    return out


def _burst(ctx, h, f, k, stop, reach, lane):
    """One server, busy: up to `reach` more batches per lane at once while each starts as the one before ends.

    Batch i of the burst starts at d_i = f + S(k) + … + S(k+i-1), a cumulative
    sum added in the same order as step by step (the same bits), and takes
    min(B, N(d_i) − h_i) queries, N(t) the arrivals by t; so the heads follow
    h_{i+1} = min(h_i + B, N(d_i)), a running minimum. The burst ends before
    the first batch that would start idle, or at the lane's stop.
    """
    e_pad, table, D, C, K, stamp, bpow, sequence, n, width, seg, scale, bm, wu = ctx
    sid, base, row, sc, bm1, b, w = lane
    size = min(reach, max(4, _BURST_CELLS // len(h)))
    i = np.arange(size + 1)
    keys = np.minimum(row[:, None] + k[:, None] + i[:-1], len(table) - 1)
    ends = np.cumsum(np.concatenate([f[:, None], table[keys] * sc[:, None]], axis=1), axis=1)
    arrived = np.searchsorted(e_pad[:n], ends[:, :-1].ravel(), "right").reshape(len(h), size)
    heads = b[:, None] * i + np.minimum.accumulate(
        np.concatenate([h[:, None], arrived - b[:, None] * i[1:]], axis=1), axis=1)
    at = np.minimum(heads[:, :-1], n)
    ready = np.minimum(e_pad[at] + w[:, None], e_pad[at + bm1[:, None]])
    taken = np.cumprod((ends[:, :-1] > ready) & (heads[:, :-1] < stop[:, None]), axis=1, dtype=bool).sum(1)
    slots = np.where(i[:-1] < taken[:, None], base[:, None] + at, (base + width - 1)[:, None])
    D[slots], C[slots], K[slots], stamp[slots] = ends[:, :-1], ends[:, 1:], k[:, None] + i[:-1], sid[:, None]
    ar = np.arange(len(h))
    return heads[ar, taken], ends[ar, taken], k + taken


def _count(e_pad, h, d, bpow, b):
    """Queries that have arrived by d from head h, at most B: a binary search over the next bpow arrivals."""
    if bpow == 1:
        return 1
    lo, step = np.ones_like(h), bpow
    while step > 1:
        step //= 2
        lo = np.where(e_pad[h + lo + step - 1] <= d, lo + step, lo)
    return np.minimum(lo, b)


def _measure(e, scale, D, C, valid, warmup, labels) -> list[SimResult]:
    """Per job: each query's batch (the last true head at or before it), then the statistics after warm-up."""
    jobs_n, n = valid.shape
    warm = int(warmup * n)
    ranks = [_rank(n - warm, 50.0), _rank(n - warm, P_TAIL)]
    q, chunk, out = np.arange(n), max(1, (1 << 21) // n), []
    for j0 in range(0, jobs_n, chunk):
        v, sc = valid[j0 : j0 + chunk, warm:], scale[j0 : j0 + chunk]
        owner = np.maximum.accumulate(np.where(valid[j0 : j0 + chunk], q, 0), axis=1)[:, warm:]
        d, done = (np.take_along_axis(a[j0 : j0 + chunk], owner, 1) for a in (D, C))
        if np.isnan(done).any():
            raise UserError("service_order='sequence' needs a service time for every batch")
        lat = (done - e[warm:]) / sc[:, None]
        tails = np.partition(lat, ranks, axis=1)[:, ranks]
        waits = (d.mean(1) - e[warm:].mean()) / sc
        busy = np.where(v, done - d, 0).sum(1) / sc
        span = (done.max(1) - e[warm]) / sc
        batched = n - warm - np.where(v.any(1), v.argmax(1), n - warm)  # queries from the first head on
        stats = zip(tails, lat.mean(1), waits, busy / span, batched / np.maximum(v.sum(1), 1), lat)
        for r, (tail, mean, wait, busy_share, batch, lats) in enumerate(stats):
            rate, bm, c = (label[j0 + r] for label in labels)
            out.append(SimResult(float(rate), int(bm), int(c), True, float(tail[0]), float(tail[1]), float(mean),
                                 float(wait), float(busy_share / c), float(batch), lats.copy()))
    return out


def _rank(m: int, p: float) -> int:
    """0-based index of the nearest-rank p-th percentile of m sorted values (as `bench.stats.percentile`)."""
    return max(1, math.ceil(p / 100 * m)) - 1


def _nearest_rank(sorted_values: np.ndarray, p: float) -> float:
    return float(sorted_values[_rank(len(sorted_values), p)])
