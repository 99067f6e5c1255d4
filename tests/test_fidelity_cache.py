"""The fidelity reference is computed once per workload configuration (issue 11, item 5).

A hit must give exactly the reference a fresh computation gives; any change
to what determines the outputs must miss; a damaged entry must be rebuilt,
never trusted.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from safetensors.torch import save_file

from aigcbench.backends import registry as backends
from aigcbench.bench import fidelity_cache
from aigcbench.bench.fidelity import FIDELITY_SEED_OFFSET
from aigcbench.bench.runner import _eager_outputs, run_cell
from aigcbench.workloads import registry

from .fake_backend import FakeBackend
from .fakes import FakeClock
from .test_cli import cli
from .test_runner import MS, _config


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The session-wide test cache would make "computed" depend on test order.
    cache = tmp_path / "cache"
    monkeypatch.setenv("AIGCBENCH_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def dcgan_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dcgan-weights")
    save_file(registry.build("dcgan", "tiny", seed=5).generator.state_dict(), folder / "generator.safetensors")
    return folder


class Counting:
    """`compute` for `fidelity_cache.reference`: eager fp32 on the check batch, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def reference(self, spec: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
        spec = {"seed": 0, "check": 2, "offset": FIDELITY_SEED_OFFSET, **spec}
        workload = registry.build(spec["workload"], spec["size"], spec["seed"], steps=spec.get("steps"),
                                  scheduler=spec.get("scheduler"), weights=spec.get("weights"))

        def compute() -> dict[str, torch.Tensor]:
            self.calls += 1
            return _eager_outputs(workload, workload.make_batch(spec["check"], spec["seed"] + spec["offset"]))

        return fidelity_cache.reference(workload, spec["check"], spec["offset"], compute)


DCGAN = {"workload": "dcgan", "size": "tiny"}
DDPM = {"workload": "ddpm", "size": "tiny", "steps": 2, "scheduler": "ddpm"}


def test_a_second_identical_config_is_served_from_the_cache_with_equal_tensors() -> None:
    counting = Counting()
    first, first_source = counting.reference(DCGAN)
    second, second_source = counting.reference(DCGAN)
    assert (first_source, second_source, counting.calls) == ("computed", "cached", 1)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name])


@pytest.mark.parametrize(
    "base, changed",
    [
        pytest.param(DCGAN, {**DCGAN, "seed": 1}, id="seed"),
        pytest.param(DCGAN, {**DCGAN, "size": "base"}, id="size"),
        pytest.param(DDPM, {**DDPM, "steps": 3}, id="steps"),
        pytest.param(DDPM, {**DDPM, "scheduler": "ddim"}, id="scheduler"),
        pytest.param(DCGAN, {**DCGAN, "weights": "WEIGHTS"}, id="weights"),
        pytest.param(DCGAN, {**DCGAN, "check": 1}, id="fidelity-batch-size"),
        pytest.param(DCGAN, {**DCGAN, "offset": FIDELITY_SEED_OFFSET + 1}, id="seed-offset"),
    ],
)
def test_any_change_to_what_determines_the_outputs_misses(base: dict, changed: dict, dcgan_weights: Path) -> None:
    changed = {k: (dcgan_weights if v == "WEIGHTS" else v) for k, v in changed.items()}
    counting = Counting()
    assert counting.reference(base)[1] == "computed"
    assert counting.reference(changed)[1] == "computed"
    assert counting.reference(base)[1] == "cached"  # the first entry is still there, untouched
    assert counting.reference(changed)[1] == "cached"
    assert counting.calls == 2


@pytest.mark.parametrize("part", ["code", "torch", "diffusers"])
def test_other_workload_code_or_library_versions_miss(part: str, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting()
    assert counting.reference(DCGAN)[1] == "computed"
    if part == "code":
        monkeypatch.setattr(fidelity_cache, "workload_code_digest", lambda: "edited")
    else:
        real = fidelity_cache._version
        monkeypatch.setattr(fidelity_cache, "_version", lambda d: "99.0" if d == part else real(d))
    assert counting.reference(DCGAN)[1] == "computed"


def _entry(cache: Path) -> Path:
    (entry,) = (cache / fidelity_cache.FOLDER).iterdir()
    return entry


def _truncate(entry: Path) -> None:
    tensors = entry / fidelity_cache.TENSORS
    tensors.write_bytes(tensors.read_bytes()[:100])


def _garbage(entry: Path) -> None:
    (entry / fidelity_cache.TENSORS).write_bytes(b"not a torch file")


def _flipped_value(entry: Path) -> None:
    # A silent bit of rot: still a valid file, other numbers (the checksum catches it).
    tensors = entry / fidelity_cache.TENSORS
    data = torch.load(tensors, weights_only=True)
    torch.save({k: v + 1 for k, v in data.items()}, tensors)


def _wrong_shape_with_a_matching_checksum(entry: Path) -> None:
    tensors = entry / fidelity_cache.TENSORS
    torch.save({"output": torch.zeros(1, 3)}, tensors)
    meta = json.loads((entry / fidelity_cache.META).read_text())
    meta["sha256"] = fidelity_cache._file_sha256(tensors)
    (entry / fidelity_cache.META).write_text(json.dumps(meta))


def _meta_not_json(entry: Path) -> None:
    (entry / fidelity_cache.META).write_text("{")


def _meta_missing(entry: Path) -> None:
    (entry / fidelity_cache.META).unlink()


def _tensors_missing(entry: Path) -> None:
    (entry / fidelity_cache.TENSORS).unlink()


def _other_key(entry: Path) -> None:
    meta = json.loads((entry / fidelity_cache.META).read_text())
    meta["key"]["config"]["seed"] = 12345
    (entry / fidelity_cache.META).write_text(json.dumps(meta))


def _pickled_code(entry: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pickle ran",))

    tensors = entry / fidelity_cache.TENSORS
    torch.save({"output": Evil()}, tensors)
    meta = json.loads((entry / fidelity_cache.META).read_text())
    meta["sha256"] = fidelity_cache._file_sha256(tensors)
    (entry / fidelity_cache.META).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage",
    [_truncate, _garbage, _flipped_value, _wrong_shape_with_a_matching_checksum, _meta_not_json, _meta_missing,
     _tensors_missing, _other_key, _pickled_code],
)
def test_a_damaged_entry_is_rebuilt_never_trusted(damage: Callable[[Path], None], own_cache: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    counting = Counting()
    good, _ = counting.reference(DCGAN)
    damage(_entry(own_cache))
    rebuilt, source = counting.reference(DCGAN)
    assert source == "computed" and counting.calls == 2
    assert all(torch.equal(good[k], rebuilt[k]) for k in good)
    assert counting.reference(DCGAN)[1] == "cached"  # the rebuilt entry is whole again
    assert "pickle ran" not in capsys.readouterr().out


def test_an_unwritable_cache_costs_only_the_saving(own_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise PermissionError("read-only cache")

    monkeypatch.setattr(fidelity_cache, "publish_entry", refuse)
    counting = Counting()
    assert counting.reference(DCGAN)[1] == "computed"
    assert counting.reference(DCGAN)[1] == "computed"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    monkeypatch.setitem(backends.BUILTIN, "fake", "tests.fake_backend:FakeBackend")
    clock = FakeClock()
    # An offset output makes the fidelity errors non-zero, so equal numbers mean something.
    for attr, value in {"clock": clock, "service_ns": itertools.repeat(MS), "fail_after": None,
                        "output_offset": 1e-3, "calls": 0, "closed": 0}.items():
        monkeypatch.setattr(FakeBackend, attr, value)
    return clock


@pytest.mark.parametrize("workload", ["dcgan", "ddpm"])
def test_fidelity_verdicts_are_equal_with_and_without_the_cache(workload: str, fake: FakeClock) -> None:
    extra = {"steps": 2} if workload == "ddpm" else {}
    first = run_cell(_config(workload, iterations=3, **extra), clock=fake)
    second = run_cell(_config(workload, iterations=3, **extra), clock=fake)
    assert first.metadata["fidelity_reference"] == "computed"
    assert second.metadata["fidelity_reference"] == "cached"
    assert first.metrics["fidelity"]["max_rel_error"] > 0
    assert first.metrics["fidelity"] == second.metrics["fidelity"]
    assert first.status == second.status


def test_a_backend_that_computes_nothing_needs_no_reference(fake: FakeClock, own_cache: Path) -> None:
    record = run_cell(dataclasses.replace(_config("dcgan", iterations=3), backend="null"))
    assert "fidelity_reference" not in record.metadata
    assert not (own_cache / fidelity_cache.FOLDER).exists()


SWEEP = """
[sweep]
name = "reference-once"
[defaults]
workload = "dcgan"
backend = "pytorch"
size = "tiny"
duration = 0.05
min_iterations = 2
warmup = 0
warmup_duration = 0
[matrix]
batch_size = [2, 4]
"""


def test_a_sweep_computes_the_reference_once_per_workload_config(tmp_path: Path, own_cache: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SWEEP)
    out = tmp_path / "records.json"
    result = cli("sweep", str(path), "--store", str(tmp_path / "r.db"), "--json", str(out),
                 env={"AIGCBENCH_CACHE": str(own_cache)})
    assert result.returncode == 0, result.stderr
    records = json.loads(out.read_text())
    # Batch 2 and 4 share the check batch (2 items), so the second cell reuses the first one's reference.
    assert sorted(r["metadata"]["fidelity_reference"] for r in records) == ["cached", "computed"]
    assert len(list((own_cache / fidelity_cache.FOLDER).iterdir())) == 1
