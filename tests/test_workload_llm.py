"""The text-decoder workload (`llm`): published parameter counts, FLOPs, the in-place KV cache, TTFT/TPOT, refusals.

base and large are checked on the meta device (nothing allocated); the
cache is checked against transformers' own forward pass over the whole
sequence without a cache, which is what a correct cache must reproduce.
Pipelines here run short sequences (`SHORT`), so the file stays fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from aigcbench.bench.cli import app
from aigcbench.bench.errors import UserError
from aigcbench.workloads import flops, registry
from aigcbench.workloads.base import Workload
from aigcbench.workloads.checkpoint import CheckpointError
from aigcbench.workloads.llm import DECODE, LLAMA_2_7B, PREFILL, TINYLLAMA_1_1B, TextDecoder

NAME = "llm"
SHORT = {"prompt_tokens": 8, "new_tokens": 6}


def on_meta(size: str, **params: int) -> Workload:
    with torch.device("meta"):
        return registry.build(NAME, size, params=params or None)


def short(seed: int = 0, **params: Any) -> Workload:
    return registry.build(NAME, "tiny", seed, params={**SHORT, **params})


class Recording:
    """A component as a session that keeps every output it returns."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.outputs = module, []

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.module(*inputs)
        self.outputs.append(out)
        return out


def recorded_run(workload: Workload, batch_size: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The pipeline's sequences and the logits it chose each new token from, (B, new_tokens, vocab)."""
    sessions = {name: Recording(module) for name, module in workload.components().items()}
    with torch.inference_mode():
        sequences = workload.run(sessions, workload.make_batch(batch_size, seed))
    logits = torch.stack([*sessions[PREFILL].outputs, *sessions[DECODE].outputs], dim=1)
    return sequences, logits


# --- the published models ---------------------------------------------------


@pytest.mark.parametrize(("size", "config", "params"), [
    # TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T: config.json
    # (https://huggingface.co/TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T/blob/main/config.json);
    # 1,100,048,384 is what its safetensors checkpoint holds (the model card's "1.1B").
    ("base", TINYLLAMA_1_1B, 1_100_048_384),
    # meta-llama/Llama-2-7b-hf: config.json (https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json);
    # 6,738,415,616 parameters, the count of its checkpoint (Touvron et al. 2023, "Llama 2": 7B).
    ("large", LLAMA_2_7B, 6_738_415_616),
])
def test_base_and_large_have_the_published_parameter_counts(size: str, config: dict, params: int) -> None:
    workload = on_meta(size)
    assert flops.param_count(workload) == params
    # Both components share one model: the count is of the model, once.
    assert all(sum(p.numel() for p in m.parameters()) == params for m in workload.components().values())
    model = workload.config()["model"]
    # transformers 5 keeps rope_theta among the rope parameters.
    assert {k: model[k] for k in config if k != "rope_theta"} == {k: v for k, v in config.items() if k != "rope_theta"}
    assert model["rope_parameters"] == {"rope_type": "default", "rope_theta": 10000.0}
    assert model["model_type"] == "llama"


def llama_flops(model: dict[str, Any], queries: int, keys: int) -> int:
    """A Llama call's FLOPs from its config: 2 per multiply-add of every projection over `queries` positions,
    QKᵀ and AV over `keys` positions for every query head (causal prefill counted whole, as the math kernel
    runs it), and the LM head on the last position only."""
    hidden, layers, heads = model["hidden_size"], model["num_hidden_layers"], model["num_attention_heads"]
    head_dim = hidden // heads
    kv = model["num_key_value_heads"] * head_dim
    per_layer = hidden * hidden * 2 + hidden * kv * 2 + 3 * hidden * model["intermediate_size"]
    attention = 4 * queries * keys * heads * head_dim
    return layers * (2 * queries * per_layer + attention) + 2 * hidden * model["vocab_size"]


@pytest.mark.parametrize("size", ["base", "large"])
def test_flops_are_counted_on_meta_and_match_the_architecture(size: str) -> None:
    workload = on_meta(size)
    model, prompt, length = workload.config()["model"], workload.prompt_tokens, workload.cache_length
    prefill, decode = flops.count_flops(workload, PREFILL), flops.count_flops(workload, DECODE)
    assert prefill == llama_flops(model, prompt, prompt)
    assert decode == llama_flops(model, 1, length)  # the whole static cache, masked
    if size == "base":  # 251.1 GFLOP of prefill, 2.1 GFLOP per decode step: ~2 × params per token
        assert (prefill, decode) == (251_118_223_360, 2_114_977_792)
    # Per generated token: a row's prefill and its new_tokens − 1 decode steps over its new_tokens.
    row = prefill + (workload.new_tokens - 1) * decode
    assert flops.per_unit(row, workload.units_per_row()) == row / 128


def test_tiny_is_a_small_llama_with_grouped_query_attention() -> None:
    workload = short()
    model = workload.config()["model"]
    assert (model["num_hidden_layers"], model["hidden_size"], model["vocab_size"]) == (2, 64, 512)
    assert model["num_attention_heads"] == 2 * model["num_key_value_heads"]
    assert workload.calls_per_batch() == {PREFILL: 1, DECODE: 5}
    assert workload.units_per_row() == 6.0
    assert workload.config()["cache_length"] == 14
    assert TextDecoder.accepts == {"prompt_tokens": 128, "new_tokens": 128}
    assert registry.build(NAME, "tiny").calls_per_batch() == {PREFILL: 1, DECODE: 127}


# --- the cache --------------------------------------------------------------


def test_cached_decoding_gives_transformers_full_forward_logits() -> None:
    workload = short(seed=4)
    sequences, logits = recorded_run(workload, batch_size=2)
    prompt, new = SHORT["prompt_tokens"], SHORT["new_tokens"]
    assert sequences.shape == (2, prompt + new) and sequences.dtype == torch.int64
    assert torch.equal(sequences[:, :prompt], workload.make_batch(2, 0).inputs[0])
    # transformers' own forward over the whole sequence, no cache: the logits each new token was chosen from.
    with torch.inference_mode():
        full = workload.model(sequences[:, :-1], use_cache=False).logits[:, prompt - 1:]
    assert logits.shape == full.shape == (2, new, 512)
    torch.testing.assert_close(logits, full, rtol=1e-5, atol=1e-5)
    assert torch.equal(sequences[:, prompt:], full.argmax(-1))  # greedy


def test_a_two_byte_cache_lives_in_the_same_int32_storage() -> None:
    # bf16 keys and values, two to a 4-byte word of the one allocation, still give the uncached forward's logits.
    workload = short(seed=2)
    workload.model.to(torch.bfloat16)
    sequences, logits = recorded_run(workload, batch_size=2)
    with torch.inference_mode():
        full = workload.model(sequences[:, :-1], use_cache=False).logits[:, SHORT["prompt_tokens"] - 1:]
    assert logits.dtype == torch.bfloat16
    error = (logits.float() - full.float()).norm() / full.float().norm()
    assert error < 2e-2


def test_the_cache_is_written_in_place_into_the_one_tensor() -> None:
    workload = short()
    ids = workload.make_batch(1, 0).inputs[0]
    cache = workload.new_cache(1, "cpu")
    assert cache.dtype == torch.int32 and cache.shape[-2] == workload.cache_length
    with torch.inference_mode():
        workload.prefill(ids, cache)
        written = cache.clone()
        workload.decode(ids[:, :1], torch.tensor([SHORT["prompt_tokens"]]), cache)
    positions = cache.ne(0).any(dim=(0, 1, 2, 3, 5))
    assert positions.tolist() == [True] * (SHORT["prompt_tokens"] + 1) + [False] * (SHORT["new_tokens"] - 1)
    assert torch.equal(written[..., : SHORT["prompt_tokens"], :], cache[..., : SHORT["prompt_tokens"], :])


def test_fidelity_gates_the_logits_not_the_tokens() -> None:
    workload = short()
    batch = workload.make_batch(2, 0)
    with torch.inference_mode():
        outputs = workload.fidelity_outputs(dict(workload.components()), batch)
    assert set(outputs) == {"prefill_logits", "decode_logits", "output"}
    assert outputs["prefill_logits"].shape == outputs["decode_logits"].shape == (2, 512)
    assert set(workload.ungated_outputs()) == {"output"}


# --- the metrics ------------------------------------------------------------


def test_metric_extras_are_ttft_tpot_and_tokens_per_second() -> None:
    prefill = {"p50": 0.02, "p90": 0.03, "p99": 0.04, "n": 10}
    decode = {"p50": 0.001, "p90": 0.002, "p99": 0.003, "n": 1270}
    components = {PREFILL: prefill, DECODE: decode}
    extras = registry.get(NAME).metric_extras({"units_per_row": 128.0}, components, {"p50": 0.2}, 640.0)
    assert extras == {"ttft_s": {**prefill, "component": PREFILL}, "tpot_s": {**decode, "component": DECODE},
                      "tokens_per_s": 640.0}
    assert extras["ttft_s"] is not prefill  # copies: the record's summaries are left alone
    # One new token per row: no decode step was timed, so there is no time per output token.
    assert TextDecoder.metric_extras({}, {PREFILL: prefill}, {}, 5.0) == {
        "ttft_s": {**prefill, "component": PREFILL}, "tokens_per_s": 5.0}


def test_a_measured_cell_records_ttft_tpot_and_passes_fidelity(tmp_path: Path, monkeypatch) -> None:
    from aigcbench.bench.config import RunConfig
    from aigcbench.bench.runner import run_cell

    monkeypatch.setenv("AIGCBENCH_CACHE", str(tmp_path))
    options = {"workload": NAME, "backend": "pytorch", "size": "tiny", "duration": 0.05, "min_iterations": 2,
               "warmup": 0, "warmup_duration": 0, **SHORT}
    record = run_cell(RunConfig.from_options(options))
    assert record.status == "ok", record.reason
    metrics = record.metrics
    assert metrics["fidelity"]["passed"] and metrics["fidelity"]["gated"] == ["prefill_logits", "decode_logits"]
    assert record.workload["unit"] == "token" and record.workload["units_per_row"] == 6
    assert metrics["ttft_s"] == {**metrics["component_latency_s"][PREFILL], "component": PREFILL}
    assert metrics["tpot_s"] == {**metrics["component_latency_s"][DECODE], "component": DECODE}
    assert metrics["tpot_s"]["n"] == 5 * metrics["iterations"]
    assert metrics["tokens_per_s"] == metrics["throughput_items_per_s"] > 0
    assert record.workload["components"][DECODE]["calls_per_batch"] == 5


# --- refusals ---------------------------------------------------------------


def test_a_sequence_longer_than_the_models_positions_is_refused() -> None:
    with pytest.raises(UserError, match=r"400 \+ --new-tokens 200 = 600 positions.*max_position_embeddings \(512\)"):
        registry.build(NAME, "tiny", params={"prompt_tokens": 400, "new_tokens": 200})
    assert registry.build(NAME, "tiny", params={"prompt_tokens": 500, "new_tokens": 12}).cache_length == 512


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_token_counts_must_be_positive_integers(value: Any) -> None:
    with pytest.raises(UserError, match="--new-tokens must be (an integer|from 1)"):
        registry.build(NAME, "tiny", params={"new_tokens": value})


def test_the_cli_refuses_too_long_a_sequence_and_the_onnx_backends_with_exit_2() -> None:
    runner = CliRunner()
    common = ["run", "-w", NAME, "--size", "tiny", "--no-store", "--in-process"]
    too_long = runner.invoke(app, [*common, "-b", "pytorch", "--prompt-tokens", "400", "--new-tokens", "200"])
    assert too_long.exit_code == 2
    assert "600 positions, more than llm tiny's max_position_embeddings (512)" in " ".join(too_long.output.split())
    for backend in ("onnxruntime", "openvino"):
        refused = runner.invoke(app, [*common, "-b", backend])
        assert refused.exit_code == 2, refused.output
        assert "cannot be exported to it: its KV cache is one preallocated tensor" in " ".join(refused.output.split())


def test_the_declaration_imports_no_torch() -> None:
    code = ("import sys, aigcbench.workloads.llm as m; m.TextDecoder.metric_extras({}, {}, {}, 1.0); "
            "print(any(n in sys.modules for n in ('torch', 'transformers')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- --weights --------------------------------------------------------------


def save_tiny(folder: Path, seed: int = 0) -> Workload:
    workload = short(seed)
    workload.model.save_pretrained(folder)
    return workload


def test_weights_round_trip_through_a_saved_folder(tmp_path: Path) -> None:
    saved = save_tiny(tmp_path, seed=5)
    registry.check(NAME, "tiny", weights=tmp_path)
    loaded = registry.build(NAME, "base", weights=tmp_path, params=SHORT)  # the folder, not the size, is the model
    assert torch.equal(recorded_run(loaded)[1], recorded_run(saved)[1])
    assert loaded.config()["weights"] == str(tmp_path) and len(loaded.config()["weights_sha256"]) == 64
    assert loaded.config()["model"] == saved.config()["model"]
    with pytest.raises(UserError, match=r"more than .*max_position_embeddings \(512\)"):
        registry.build(NAME, "base", weights=tmp_path, params={"prompt_tokens": 512, "new_tokens": 1})


def test_a_sharded_torch_era_checkpoint_with_stale_rotary_tables_loads(tmp_path: Path) -> None:
    saved = save_tiny(tmp_path, seed=1)
    state = load_file(str(tmp_path / "model.safetensors"))
    (tmp_path / "model.safetensors").unlink()
    # What transformers < 4.31 conversions hold: each layer's rotary table, recomputed from the config now.
    state["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, str(tmp_path / shard))
    index = {"metadata": {}, "weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = registry.build(NAME, "tiny", weights=tmp_path, params=SHORT)
    assert torch.equal(recorded_run(loaded)[1], recorded_run(saved)[1])


def test_a_tied_head_needs_no_lm_head_tensor(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in state.items() if k != "lm_head.weight"}, str(tmp_path / "model.safetensors"))
    loaded = registry.build(NAME, "tiny", weights=tmp_path, params=SHORT)
    assert loaded.model.lm_head.weight.data_ptr() == loaded.model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(loaded.model.lm_head.weight, state["model.embed_tokens.weight"])


def test_a_checkpoint_missing_a_tensor_is_refused_before_loading(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in state.items() if k != "lm_head.weight"}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="lacks tensor 'lm_head.weight'"):
        registry.check(NAME, "tiny", weights=tmp_path)


@pytest.mark.parametrize(("changes", "message"), [
    ({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}, "describes.*needs a LlamaForCausalLM"),
    ({"num_key_value_heads": 3}, "must be a multiple of num_key_value_heads"),
    ({"hidden_size": 0}, "hidden_size must be an integer from 1"),
    ({"num_hidden_layers": 3}, "lacks tensor 'model.layers.2"),
])
def test_a_config_the_decoder_cannot_run_is_a_one_line_user_error(
        tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    save_tiny(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **changes}))
    with pytest.raises(UserError, match=message) as refused:
        TextDecoder.check_weights("tiny", tmp_path)
    assert "\n" not in str(refused.value)


def test_a_folder_without_a_checkpoint_names_what_it_needs(tmp_path: Path) -> None:
    save_tiny(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(UserError, match="has no model.safetensors.index.json, model.safetensors or pytorch_model.bin"):
        TextDecoder.check_weights("tiny", tmp_path)
