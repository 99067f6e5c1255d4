"""`aigcbench calibrate`: measured ceilings, their records, and the report leaving them out.

The measurement is checked on a fake clock whose kernels "take" known times,
so every rate is exact; one short real CLI run checks the torch kernels and the
store end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Iterable

import pytest
from typer.testing import CliRunner

from aigcbench.bench import ceilings
from aigcbench.bench.ceilings import Ceiling, Probe
from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.bench.probes.environment import fingerprint
from aigcbench.bench.record import Record
from aigcbench.bench.store import Store
from aigcbench.reports.select import parse_where

from .fakes import FakeClock
from .records import synthetic_record

runner = CliRunner()
AIGCBENCH = Path(sys.executable).parent / "aigcbench"  # the installed console script
MS = 1_000_000


def _probe(clock: FakeClock, cost_ns, sizes: tuple[int, ...] = (1000,), work=lambda n: 1e9, **kw) -> Probe:
    """A probe whose call at size n advances the fake clock by cost_ns(n) (a number or a callable)."""
    def make_call(n: int):
        return lambda: clock.advance(cost_ns(n) if callable(cost_ns) else next(cost_ns))

    return Probe(kw.get("kind", "gemm"), kw.get("precision", "fp32"), sizes, make_call, work)


def _measure(probe: Probe, clock: FakeClock, duration_s: float) -> Ceiling:
    return ceilings.measure(probe, "cpu", duration_s=duration_s, clock=clock, sync=lambda: None, threads=2)


def _ceiling(precision: str = "fp32", call_s: Iterable[float] = (0.02, 0.025, 0.03), kind: str = "gemm",
             size: int = 1024, warnings: tuple[str, ...] = ()) -> Ceiling:
    work = 2.0 * size**3 if kind == "gemm" else 2.0 * size
    return Ceiling(kind, precision, "cpu", size, work, 1, tuple(call_s), 2, warnings)


# ----------------------------------------------------------------------------- measurement on a fake clock

def test_size_doubles_until_a_call_is_long_enough_and_rate_is_exact() -> None:
    clock = FakeClock()
    # 32 FLOP per ns: n=512 takes 8.4 ms (too short), n=1024 takes 67 ms.
    probe = _probe(clock, lambda n: n**3 // 16, sizes=ceilings.GEMM_SIZES, work=lambda n: 2.0 * n**3)
    c = _measure(probe, clock, duration_s=0.5)
    assert (c.size, c.repeats) == (1024, 1)
    assert c.work_per_call == 2.0 * 1024**3
    assert c.best_per_s == pytest.approx(32e9, rel=1e-12)
    assert c.median_per_s == pytest.approx(32e9, rel=1e-12)
    # Calls continue until 0.5 s have passed: 8 calls of 67.1 ms.
    assert len(c.call_s) == 8


def test_best_is_the_fastest_call_and_median_the_typical_one() -> None:
    clock = FakeClock()
    # Sizing (an untimed and a timed call), the warm-up, then three measured calls.
    costs = iter([25 * MS, 25 * MS, 25 * MS, 40 * MS, 30 * MS, 50 * MS])
    c = _measure(_probe(clock, costs), clock, duration_s=0.1)
    assert c.call_s == pytest.approx((0.04, 0.03, 0.05))
    assert c.best_per_s == pytest.approx(1e9 / 0.03)
    assert c.median_per_s == pytest.approx(1e9 / 0.04)


def test_too_fast_kernel_is_repeated_and_timed_per_invocation() -> None:
    clock = FakeClock()
    c = _measure(_probe(clock, lambda n: 5 * MS), clock, duration_s=0.1)
    assert c.repeats == 4  # 4 × 5 ms reaches the 20 ms a timed call needs
    assert c.call_s == pytest.approx((0.005,) * len(c.call_s)) and len(c.call_s) == 5
    assert c.best_per_s == pytest.approx(1e9 / 0.005)


def test_unsupported_precision_gives_a_note_and_no_ceiling() -> None:
    clock = FakeClock()

    def unsupported(n: int):
        def call() -> None:
            raise RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'\nmore detail')
        return call

    probes = [_probe(clock, lambda n: 25 * MS), Probe("gemm", "fp16", (512,), unsupported, lambda n: 1.0)]
    measured, notes = ceilings.calibrate("cpu", duration_s=0.05, clock=clock, probes=probes, sync=lambda: None)
    assert [c.name for c in measured] == ["gemm-fp32"]
    assert notes == ["gemm-fp16: not measured on cpu, the kernel raised: "
                     "\"addmm_impl_cpu_\" not implemented for 'Half'"]


def test_reduced_precision_far_below_fp32_is_flagged_emulated() -> None:
    fp32 = _ceiling("fp32", (0.01,))
    slow = _ceiling("bf16", (0.04,))  # a quarter of fp32
    fast = _ceiling("fp16", (0.015,))  # two thirds: a real, if slow, unit
    copy = _ceiling("fp32", (0.5,), kind="copy", size=2**28)
    flagged = {c.name: c for c in ceilings.flag_emulation([fp32, slow, fast, copy])}
    assert flagged["gemm-bf16"].warnings == (
        "emulated: bf16 GEMM reaches only 0.25× of fp32: no native bf16 matrix unit on this device",)
    assert all(flagged[name].warnings == () for name in ("gemm-fp16", "gemm-fp32", "copy"))


def test_input_checks() -> None:
    assert ceilings.resolve_device("cpu") == "cpu"
    for bad in ("tpu", "cuda:x", "mps"):
        with pytest.raises(UserError, match="cpu or cuda"):
            ceilings.resolve_device(bad)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(UserError, match="--duration"):
            ceilings.check_duration(bad)


def test_copy_buffer_outgrows_the_cache(tmp_path: Path) -> None:
    (tmp_path / "index0").mkdir()
    (tmp_path / "index0" / "size").write_text("32K\n")
    (tmp_path / "index3").mkdir()
    (tmp_path / "index3" / "size").write_text("32768K\n")
    assert ceilings.host_llc_bytes(tmp_path) == 32 * 2**20
    assert ceilings.host_llc_bytes(tmp_path / "absent") == 0
    assert ceilings.copy_buffer_bytes("cpu") >= max(ceilings.CPU_COPY_BYTES, 4 * ceilings.host_llc_bytes())


# ----------------------------------------------------------------------------- records

def test_record_follows_the_contract_and_round_trips(store_path: Path) -> None:
    env = fingerprint()
    gemm = _ceiling("bf16", (0.02, 0.025, 0.03), warnings=("emulated: x",))
    copy = _ceiling("fp32", (0.1, 0.2), kind="copy", size=2**28)
    records = ceilings.ceiling_records([gemm, copy], env, "abc123", "2.13.0")
    r = records[0]
    assert r.status == "ok" and r.reason is None and r.git_commit == "abc123"
    assert r.workload == {"name": "ceiling", "family": "ceiling", "size": "gemm", "unit": "flop", "params": 0,
                          "param_bytes": 0, "flops_per_item": None, "calls_per_batch": {}, "config": {"n": 1024}}
    assert r.backend == {"name": "pytorch", "version": "2.13.0", "device": "cpu", "precision": "bf16",
                         "options": {"threads": 2}}
    assert r.scenario == {"name": "ceiling", "batch_size": 1}
    assert {"hardware_key", "cpu", "gpus", "memory_bytes"} <= set(r.environment) and r.environment == env
    assert set(r.metrics) == {"ceiling_per_s", "throughput_items_per_s", "latency_s", "iterations"}
    assert r.metrics["ceiling_per_s"] == pytest.approx(2.0 * 1024**3 / 0.02)
    assert r.metrics["throughput_items_per_s"] == pytest.approx(2.0 * 1024**3 / 0.025)
    assert r.metrics["latency_s"]["p50"] == 0.025 and r.metrics["latency_s"]["n"] == 3
    assert r.metrics["iterations"] == 3
    assert r.samples == {"latency_s": [0.02, 0.025, 0.03]}
    assert r.warnings == ("emulated: x",)
    assert r.labels == {"ceiling": "gemm-bf16"}
    assert r.config == {"workload": "ceiling", "backend": "pytorch", "size": "gemm", "device": "cpu",
                        "precision": "bf16", "scenario": "ceiling", "batch_size": 1}
    c = records[1]
    assert (c.workload["size"], c.workload["unit"], c.workload["config"], c.labels) == (
        "copy", "byte", {"n": 2**28}, {"ceiling": "copy"})
    assert c.metrics["ceiling_per_s"] == pytest.approx(2.0 * 2**28 / 0.1)

    assert [Record.from_dict(x.to_dict()).to_dict() for x in records] == [x.to_dict() for x in records]
    with Store.open(str(store_path)) as store:
        store.append_many(records)
        store.append(synthetic_record())
        found = store.select(parse_where(["scenario=ceiling"]))
    assert sorted(x.run_id for x in found) == sorted(x.run_id for x in records)
    assert {x.run_id: x.to_dict() for x in found} == {x.run_id: x.to_dict() for x in records}


# ----------------------------------------------------------------------------- the command

def test_real_short_calibrate_stores_positive_ceilings(tmp_path: Path) -> None:
    out = tmp_path / "ceilings.json"
    done = subprocess.run([str(AIGCBENCH), "calibrate", "--store", "tmp.db", "--duration", "0.2", "--json", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    names = {d["labels"]["ceiling"] for d in data}
    assert {"gemm-fp32", "copy"} <= names and len(data) >= 2
    assert all(d["metrics"]["ceiling_per_s"] > 0 and d["metrics"]["throughput_items_per_s"] > 0 for d in data)
    assert all(d["metrics"]["ceiling_per_s"] >= d["metrics"]["throughput_items_per_s"] for d in data)
    hardware = data[0]["environment"]["hardware_key"]
    assert f"stored {len(data)} ceiling records for {hardware} in sqlite:///{tmp_path / 'tmp.db'}" in done.stdout
    for name in names:
        assert name in done.stdout
    with Store.open(str(tmp_path / "tmp.db")) as store:
        stored = store.select(parse_where(["scenario=ceiling"]))
    assert sorted(r.run_id for r in stored) == sorted(d["run_id"] for d in data)


def test_cuda_without_a_gpu_exits_3_before_measuring(store_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    result = runner.invoke(app, ["calibrate", "--device", "cuda", "--store", str(store_path)])
    assert result.exit_code == 3, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "sees no CUDA device" in lines[0], result.stderr
    assert not store_path.exists()


@pytest.mark.parametrize("args, expected", [
    (["--duration", "0"], "--duration"), (["--duration", "-1"], "--duration"), (["--device", "tpu"], "cpu or cuda"),
    (["--json", "/no/such/folder/x.json"], "does not exist"),
])
def test_bad_input_exits_2_and_stores_nothing(args: list[str], expected: str, store_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", *args, "--store", str(store_path)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not store_path.exists()


# ----------------------------------------------------------------------------- the report

def test_report_leaves_ceilings_out_unless_asked(store_path: Path) -> None:
    ceiling = ceilings.ceiling_records([_ceiling()], fingerprint(), None, "2.13.0")
    with Store.open(str(store_path)) as store:
        store.append_many(ceiling)
        store.append(synthetic_record(workload="dcgan"))
    shown = runner.invoke(app, ["report", "--store", str(store_path)])
    assert shown.exit_code == 0, shown.output
    assert "dcgan" in shown.stdout and "ceiling" not in shown.stdout
    asked = runner.invoke(app, ["report", "--store", str(store_path), "--where", "scenario=ceiling"])
    assert asked.exit_code == 0, asked.output
    assert "ceiling" in asked.stdout and "dcgan" not in asked.stdout


def test_report_of_only_ceilings_says_how_to_ask(store_path: Path) -> None:
    with Store.open(str(store_path)) as store:
        store.append_many(ceilings.ceiling_records([_ceiling()], fingerprint(), None, "2.13.0"))
    result = runner.invoke(app, ["report", "--store", str(store_path), "--where", "backend=pytorch"])
    assert result.exit_code == 2
    assert "scenario=ceiling" in result.stderr and len(result.stderr.strip().splitlines()) == 1
