"""The cost model: operators traced on the meta device, their fit in the batch size, rooflines, the cache."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from aigcbench.bench.errors import UserError
from aigcbench.reports.plan import costmodel
from aigcbench.reports.plan.costmodel import CostModel, NoRoofline, cost_model
from aigcbench.workloads import flops, registry
from aigcbench.workloads.base import Workload

NAMES = ("dcgan", "vae", "ddpm")
STEPS = 2


@functools.lru_cache(maxsize=None)
def tiny(name: str, steps: int = STEPS) -> Workload:
    return registry.build(name, "tiny", steps=steps)


@functools.lru_cache(maxsize=None)
def model(name: str) -> CostModel:
    return cost_model(tiny(name))


@dataclass(frozen=True)
class FakeDevice:
    """A spec sheet: FLOP/s per precision (absent = unpublished) and a bandwidth."""

    peaks: dict[str, float] = field(default_factory=dict)
    bandwidth_bytes_per_s: float | None = None

    def peak_flops(self, precision: str) -> float | None:
        return self.peaks.get(precision)


def float_bytes(cm: CostModel, batch: int) -> int:
    return sum(op.calls * (op.float_bytes_fixed + batch * op.float_bytes_per_item) for op in cm.operators)


@pytest.mark.parametrize("name", NAMES)
class TestTrace:
    def test_flops_per_item_equal_the_flop_counters(self, name: str) -> None:
        cm = model(name)
        assert sum(op.calls * op.flops_per_item for op in cm.operators) == flops.flops_per_item(tiny(name))
        assert cm.flops(3) == 3 * flops.flops_per_item(tiny(name))

    def test_flops_do_not_have_a_fixed_part(self, name: str) -> None:
        assert all(op.flops_fixed == 0 for op in model(name).operators)

    def test_views_move_no_memory_and_are_left_out(self, name: str) -> None:
        ops = {op.op for op in model(name).operators}
        assert "aten.convolution" in ops
        assert not ops & {"aten.view", "aten.t", "aten.transpose", "aten.expand", "aten.unsqueeze", "aten._unsafe_view"}

    def test_fp16_halves_float_bytes_and_keeps_the_others(self, name: str) -> None:
        cm = model(name)
        assert cm.bytes(4, "fp16") < cm.bytes(4, "fp32")
        assert cm.bytes(4, "fp32") - cm.bytes(4, "fp16") == float_bytes(cm, 4) // 2
        assert cm.bytes(4, "bf16") == cm.bytes(4, "fp16")

    def test_per_item_time_falls_with_batch_on_a_memory_bound_device(self, name: str) -> None:
        # Weights are read once per call, so a bigger batch amortises them.
        device = FakeDevice({"fp32": 1e30}, bandwidth_bytes_per_s=1e9)
        per_item = [model(name).roofline(b, "fp32", device).seconds / b for b in (1, 2, 4, 8)]
        assert all(a > b for a, b in zip(per_item, per_item[1:]))


def test_every_weight_is_read_at_least_once_per_call() -> None:
    cm = model("dcgan")
    generator = tiny("dcgan").components()["generator"]
    assert cm.param_bytes_fp32 == sum(p.numel() * 4 for p in generator.parameters())
    assert sum(op.calls * op.float_bytes_fixed for op in cm.operators) >= cm.param_bytes_fp32


def test_ddpm_steps_scale_calls_and_share_one_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    two = cost_model(tiny("ddpm", 2))
    cached = (tmp_path / costmodel.CACHE_FILE).read_text()
    monkeypatch.setattr(costmodel, "trace_call", refuse_to_trace)
    four = cost_model(tiny("ddpm", 4))
    assert [op.calls for op in four.operators] == [2 * op.calls for op in two.operators]
    assert [op.op for op in four.operators] == [op.op for op in two.operators]
    assert four.flops(1) == 2 * two.flops(1)
    assert (tmp_path / costmodel.CACHE_FILE).read_text() == cached
    assert four.config_digest != two.config_digest


def refuse_to_trace(*args: object) -> None:
    raise AssertionError("traced although the cache holds the trace")


class TestCache:
    def test_a_second_call_reads_the_file(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
        first = cost_model(tiny("vae"))
        data = json.loads((tmp_path / costmodel.CACHE_FILE).read_text())
        assert len(data) == 1 and next(iter(data)).endswith(f"torch-{torch.__version__}/v{costmodel.COUNTING_VERSION}")
        monkeypatch.setattr(costmodel, "trace_call", refuse_to_trace)
        assert cost_model(tiny("vae")) == first

    @pytest.mark.parametrize("damage", ["{not json", '{"x": 1}', "[]"])
    def test_a_corrupt_file_is_rebuilt(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, damage: str) -> None:
        monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
        (tmp_path / costmodel.CACHE_FILE).write_text(damage)
        assert cost_model(tiny("dcgan")) == model("dcgan")
        data = json.loads((tmp_path / costmodel.CACHE_FILE).read_text())
        assert any(key.startswith("dcgan/tiny/") for key in data)

    def test_a_damaged_entry_is_recounted(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
        cost_model(tiny("dcgan"))
        path = tmp_path / costmodel.CACHE_FILE
        data = json.loads(path.read_text())
        path.write_text(json.dumps({key: [["aten.mm", 1.5]] for key in data}))
        assert cost_model(tiny("dcgan")) == model("dcgan")


class TestRoofline:
    def test_compute_bound_when_bandwidth_is_huge(self) -> None:
        cm = model("ddpm")
        r = cm.roofline(4, "fp32", FakeDevice({"fp32": 1e12}, bandwidth_bytes_per_s=1e30))
        assert r.seconds == pytest.approx(cm.flops(4) / 1e12) == pytest.approx(r.compute_s)
        assert (r.bound, r.precision_run, r.flops, r.bytes) == ("compute", "fp32", cm.flops(4), cm.bytes(4, "fp32"))

    def test_memory_bound_when_peak_is_huge(self) -> None:
        cm = model("ddpm")
        r = cm.roofline(4, "fp16", FakeDevice({"fp16": 1e30}, bandwidth_bytes_per_s=1e9))
        assert r.seconds == pytest.approx(cm.bytes(4, "fp16") / 1e9) == pytest.approx(r.memory_s)
        assert r.bound == "memory" and r.precision_run == "fp16"

    def test_seconds_lie_between_the_larger_term_and_the_sum(self) -> None:
        r = model("vae").roofline(2, "fp32", FakeDevice({"fp32": 1e9}, bandwidth_bytes_per_s=1e8))
        assert max(r.compute_s, r.memory_s) <= r.seconds <= r.compute_s + r.memory_s
        assert r.seconds < r.compute_s + r.memory_s  # some operators hide one term under the other

    def test_a_device_without_bf16_computes_in_fp32_and_moves_bf16_bytes(self) -> None:
        cm = model("dcgan")
        r = cm.roofline(2, "bf16", FakeDevice({"fp32": 1e12, "fp16": 1e15}, bandwidth_bytes_per_s=1e11))
        assert r.precision_run == "fp32"
        assert r.compute_s == pytest.approx(cm.flops(2) / 1e12)
        assert r.memory_s == pytest.approx(cm.bytes(2, "bf16") / 1e11)

    def test_no_roofline_without_a_usable_peak_or_a_bandwidth(self) -> None:
        cm = model("dcgan")
        with pytest.raises(NoRoofline) as caught:
            cm.roofline(1, "fp16", FakeDevice({"bf16": 1e12}, bandwidth_bytes_per_s=1e11))
        assert isinstance(caught.value, ValueError) and caught.value.reason == "no published fp16 or fp32 peak"
        with pytest.raises(NoRoofline, match="bandwidth"):
            cm.roofline(1, "fp32", FakeDevice({"fp32": 1e12}))

    def test_an_unknown_precision_is_the_users_error(self) -> None:
        with pytest.raises(UserError, match="fp8"):
            model("dcgan").roofline(1, "fp8", FakeDevice({"fp32": 1e12}, bandwidth_bytes_per_s=1e11))


def test_memory_floor_is_weights_plus_twice_the_largest_activation() -> None:
    cm = model("vae")
    largest = max(op.float_bytes_per_item for op in cm.operators)  # vae moves no integer tensors
    assert cm.memory_bytes(3, "fp32") == cm.param_bytes_fp32 + 2 * 3 * largest
    assert cm.memory_bytes(3, "fp16") == cm.param_bytes_fp32 // 2 + 3 * largest
    assert cm.memory_bytes(8, "fp32") > cm.memory_bytes(1, "fp32")


class TestFit:
    def test_fixed_and_per_item_parts_and_aggregation(self) -> None:
        one = [("aten.mm", 10, 104, 8), ("aten.add", 0, 12, 0), ("aten.mm", 10, 104, 8)]
        two = [("aten.mm", 20, 108, 16), ("aten.add", 0, 24, 0), ("aten.mm", 20, 108, 16)]
        rows = costmodel.fit_traces(one, two)
        assert rows == [["aten.mm", 2, 0, 10, 100, 4, 0, 8], ["aten.add", 1, 0, 0, 0, 12, 0, 0]]

    def test_traces_that_differ_are_a_bug(self) -> None:
        with pytest.raises(RuntimeError, match="operator 1"):
            costmodel.fit_traces(
                [("aten.mm", 1, 1, 0), ("aten.add", 0, 1, 0)], [("aten.mm", 2, 2, 0), ("aten.mul", 0, 2, 0)]
            )
        with pytest.raises(RuntimeError):
            costmodel.fit_traces([("aten.mm", 1, 1, 0)], [])


def test_a_broadcast_tensor_counts_its_stored_elements() -> None:
    bias = torch.empty(8, 1, 1, device="meta")
    assert costmodel.distinct_elements(bias.expand(4, 8, 16, 16)) == 8
    assert costmodel.distinct_elements(torch.empty(4, 8, 16, 16, device="meta")) == 4 * 8 * 16 * 16
    assert costmodel.distinct_elements(torch.empty(0, 3, device="meta")) == 0


@pytest.mark.slow
def test_ddpm_base_traces_and_agrees_with_the_flop_counter() -> None:
    workload = registry.build("ddpm", "base", steps=4)
    cm = cost_model(workload)
    assert cm.flops(1) == flops.flops_per_item(workload)
    assert all(op.flops_fixed == 0 for op in cm.operators)


@pytest.mark.parametrize("name", __import__("aigcbench.workloads.registry", fromlist=["names"]).names())
def test_every_workload_has_a_cost_model(name: str) -> None:
    # The planner prices any record in the store: a workload whose operators change with the batch
    # (beyond batch 1's views) would stop every plan over a store that holds it.
    from aigcbench.workloads import registry

    workload = registry.build(name, "tiny", steps=2)
    model = cost_model(workload)
    assert model.operators and {op.component for op in model.operators} == set(workload.components())
    assert model.memory_bytes(4, "fp32") > model.memory_bytes(1, "fp32") > 0
