"""The metric registry reads what each kind of workload adds: TTFT/TPOT/tokens/s, real-time factor, train samples/s.

Real records from real tiny runs (one per kind, written once per session), read
through `reports.metrics` only, as every report, comparison and plan reads them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigcbench.bench.record import Record
from aigcbench.reports import metrics

from .test_cli import FAST, cli

RUNS = {
    "llm": ["-w", "llm", "--new-tokens", "4", "--prompt-tokens", "8"],
    "vocoder": ["-w", "vocoder"],
    "train": ["-w", "dcgan", "--mode", "train"],
    "image": ["-w", "dcgan"],
}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Record]:
    folder = tmp_path_factory.mktemp("kinds")
    found = {}
    for kind, args in RUNS.items():
        out = folder / f"{kind}.json"
        done = cli("run", *args, "-b", "pytorch", *FAST, "--no-store", "--json", str(out))
        assert done.returncode == 0, done.stderr
        found[kind] = Record.from_dict(json.loads(out.read_text()))
    return found


def value(name: str, record: Record) -> float | None:
    return metrics.get(name).value(record)


def test_ttft_and_tpot_are_the_prefill_and_decode_calls(records: dict[str, Record]) -> None:
    llm = records["llm"]
    components = llm.metrics["component_latency_s"]
    for stat in ("p50", "p90", "p99"):
        assert value(f"ttft_{stat}_s", llm) == components["prefill"][stat]
        assert value(f"tpot_{stat}_s", llm) == components["decode"][stat]
    # Their raw samples are the calls': one prefill per batch, new_tokens − 1 decode steps.
    iterations = llm.metrics["iterations"]
    assert len(metrics.get("ttft_p50_s").raw(llm)) == iterations
    assert len(metrics.get("tpot_p50_s").raw(llm)) == 3 * iterations


def test_tokens_per_s_counts_output_tokens(records: dict[str, Record]) -> None:
    llm = records["llm"]
    assert llm.workload["unit"] == "token" and llm.workload["units_per_row"] == 4
    assert value("tokens_per_s", llm) == pytest.approx(llm.metrics["throughput_items_per_s"])
    # A call makes batch × new_tokens tokens: the per-call rates behind throughput say so too.
    per_call = metrics.get("throughput_items_per_s").raw(llm)
    assert per_call == pytest.approx([4 / s for s in llm.samples["latency_s"]])


def test_real_time_factor_is_latency_over_audio_seconds(records: dict[str, Record]) -> None:
    vocoder = records["vocoder"]
    seconds = vocoder.workload["units_per_row"]
    assert value("real_time_factor", vocoder) == pytest.approx(vocoder.metrics["latency_s"]["p50"] / seconds)
    assert value("real_time_factor_p99", vocoder) == pytest.approx(vocoder.metrics["latency_s"]["p99"] / seconds)


def test_train_samples_per_s_is_read_from_train_records_only(records: dict[str, Record]) -> None:
    train, image = records["train"], records["image"]
    assert train.workload["mode"] == "train" and train.workload["unit"] == "sample"
    assert value("train_samples_per_s", train) == train.metrics["throughput_items_per_s"] > 0
    assert value("train_samples_per_s", image) is None
    assert {"d_loss", "g_loss"} <= set(train.metrics["train"])


@pytest.mark.parametrize("name", ["ttft_p50_s", "tpot_p99_s", "tokens_per_s", "real_time_factor"])
def test_a_kind_s_metric_is_absent_not_zero_elsewhere(records: dict[str, Record], name: str) -> None:
    assert value(name, records["image"]) is None and metrics.get(name).raw(records["image"]) == []


def test_the_step_metric_is_the_most_called_component(records: dict[str, Record]) -> None:
    # The decoder's calls, not the prefill's, though the prefill is listed first.
    llm = records["llm"]
    assert value("step_latency_p50_s", llm) == llm.metrics["component_latency_s"]["decode"]["p50"]


def test_compare_gates_on_tpot(records: dict[str, Record], tmp_path: Path) -> None:
    path = tmp_path / "llm.json"
    path.write_text(json.dumps(records["llm"].to_dict()))
    done = cli("compare", str(path), str(path), "--metric", "tpot_p50_s")
    assert done.returncode == 0, done.stdout + done.stderr
    # Tested on the decode calls' samples (n = 3 per batch), not on one number per record.
    row = next(line for line in done.stdout.splitlines() if "tpot_p50_s" in line)
    assert "unchanged" in row and f"n={3 * records['llm'].metrics['iterations']}" in row
