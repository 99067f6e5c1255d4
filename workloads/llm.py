"""A text decoder (`llm`): a Llama causal LM, greedy generation with a KV cache written in place.

Two components, one `LlamaForCausalLM` shared by both (transformers' own
decoder layers; the cache is ours, see `llm_model`):
- "prefill": the prompt ids (B, P) int64 and the cache → the last position's
  logits (B, vocab); the prompt's keys and values written into the cache.
- "decode": one token per row (B, 1) int64, its position (1,) int64 and the
  cache → its logits (B, vocab); its keys and values written at the position,
  attention over the whole cache with the positions after it masked (the same
  shapes at every step, as with transformers' `StaticCache`).

The pipeline is `generate` with greedy decoding and a static cache: a prompt
of `prompt_tokens` seeded ids per row (uniform over the vocabulary; there is
no tokenizer, and speed does not depend on which ids they are), one prefill,
whose argmax is the first new token, then `new_tokens − 1` decode steps, each
feeding back the previous argmax. It returns what `generate` returns, the
sequences (B, prompt_tokens + new_tokens) int64, prompt included. The cache
is one zeroed tensor allocated per batch, of prompt_tokens + new_tokens
positions (`generate`'s `max_length`), and handed to every call, which
writes into it in place; a sequence longer than the model's
`max_position_embeddings` is refused.

Unit of work: one generated token. A row is one sequence producing
`new_tokens` tokens (`units_per_row`), so throughput is tokens per second and
FLOPs per item are a row's prefill plus its decode steps over its new
tokens. `metrics.ttft_s` is the prefill call's latency summary (time to first
token: the whole batch gets it at once), `metrics.tpot_s` the decode call's
(time per output token, per row of the batch), `metrics.tokens_per_s` the
throughput.

Fidelity: the gate compares the prefill's logits and those of one decode
step (fed the prompt's first token, not the sampled one, so that the step's
input is the same on every backend; it reads the cache that backend's prefill
wrote). The sampled sequences are reported but not gated: at a near tie an
argmax flips under a different kernel's rounding, and every token after the
flip differs, which says nothing about the size of the error.

Sizes (Llama configs; parameters include the untied LM head):
- tiny:  2 layers, hidden 64, 4 heads of 16 with 2 key/value heads (GQA),
  SwiGLU 128, vocabulary 512, 512 positions — for tests.
- base:  TinyLlama 1.1B (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T's
  config.json: 22 layers, hidden 2048, 32 heads with 4 key/value heads,
  intermediate 5632, vocabulary 32000, 2048 positions, rope θ 10000,
  RMSNorm ε 1e-5): 1,100,048,384 parameters.
- large: Llama 2 7B (meta-llama/Llama-2-7b-hf's config.json: 32 layers,
  hidden 4096, 32 heads, no GQA, intermediate 11008, vocabulary 32000, 4096
  positions): 6,738,415,616 parameters.

`--weights DIR` loads a transformers Llama folder (`config.json` and
`model.safetensors`, a `model.safetensors.index.json` with its shards, or
`pytorch_model.bin`, as `LlamaForCausalLM.save_pretrained` writes it and the
Hub publishes it), checked on the meta device before anything is measured.

This module is the workload's declaration and pipeline, and imports no torch
or transformers; the torch side is in `llm_model`, imported where a model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from ..bench import limits
from ..bench.errors import UserError
from .base import Batch, ComponentFn, Workload

if TYPE_CHECKING:
    import torch
    from torch import nn

PREFILL = "prefill"
DECODE = "decode"
DEFAULT_PROMPT_TOKENS = 128
DEFAULT_NEW_TOKENS = 128

# TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T, config.json
# (https://huggingface.co/TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T/blob/main/config.json).
TINYLLAMA_1_1B: Mapping[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
}

# meta-llama/Llama-2-7b-hf, config.json (https://huggingface.co/meta-llama/Llama-2-7b-hf/blob/main/config.json).
LLAMA_2_7B: Mapping[str, Any] = {
    **TINYLLAMA_1_1B,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
}

TINY_LLAMA: Mapping[str, Any] = {
    **TINYLLAMA_1_1B,
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
}

PRESETS: Mapping[str, Mapping[str, Any]] = {"tiny": TINY_LLAMA, "base": TINYLLAMA_1_1B, "large": LLAMA_2_7B}

GRAPH_REFUSAL = (
    "its KV cache is one preallocated tensor that prefill and decode write in place (index_copy_ into an "
    "input: int32 storage viewed as the compute dtype), and an ONNX graph cannot write its inputs or "
    "reinterpret their bits (no view.dtype); the shared graph has one output, so the cache would have to "
    "come back packed beside the logits and be copied whole at every decode step"
)


def check_tokens(values: Mapping[str, Any]) -> tuple[int, int]:
    """prompt_tokens and new_tokens as integers in their ranges (`bench.limits`), or a one-line UserError."""
    return limits.check("prompt_tokens", values["prompt_tokens"]), limits.check("new_tokens", values["new_tokens"])


def check_length(prompt_tokens: int, new_tokens: int, max_positions: int, where: str) -> int:
    """The cache length, prompt_tokens + new_tokens, refused when the model has no positions for it."""
    length = prompt_tokens + new_tokens
    if length > max_positions:
        raise UserError(f"--prompt-tokens {prompt_tokens} + --new-tokens {new_tokens} = {length} positions, more "
                        f"than {where}'s max_position_embeddings ({max_positions})", key="new_tokens")
    return length


def _summary(summaries: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = summaries.get(name)
    # `component` names whose per-call samples the summary is of, for a reader comparing distributions.
    return {**value, "component": name} if isinstance(value, Mapping) and value else None


class TextDecoder(Workload):
    """Greedy generation with a Llama: prompt ids (B, P) → one prefill → new_tokens − 1 cached decode steps."""

    name = "llm"
    family = "autoregressive"
    unit = "token"
    description = ("Llama text decoder (LlamaForCausalLM): prefill, then greedy decode with a static KV cache "
                   "written in place")
    accepts = {"prompt_tokens": DEFAULT_PROMPT_TOKENS, "new_tokens": DEFAULT_NEW_TOKENS}
    graph_refusal = GRAPH_REFUSAL
    model_modules = (
        "aigcbench.workloads.llm_model",
        "transformers.models.llama.configuration_llama",
        "transformers.models.llama.modeling_llama",
    )

    @classmethod
    def check_weights(cls, size: str, folder: Path) -> None:
        from .llm_model import check_llm_folder

        check_llm_folder(folder)

    def __init__(
        self,
        size: str,
        seed: int = 0,
        *,
        steps: int | None = None,
        scheduler: str | None = None,
        weights: Path | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(size, seed, steps=steps, scheduler=scheduler, weights=weights, params=params)
        self.prompt_tokens, self.new_tokens = check_tokens(self.params)
        if weights is None:
            # Refused before a model of billions of parameters is built for nothing.
            self.cache_length = check_length(self.prompt_tokens, self.new_tokens,
                                             int(PRESETS[size]["max_position_embeddings"]), f"llm {size}")
        from .llm_model import Decode, Prefill, architecture, build_random_model, load_llm, read_llm_config
        from .weights import weights_sha256

        if weights is None:
            self.model = build_random_model(PRESETS[size], seed)
            self.weights_digest: str | None = None
        else:
            config = read_llm_config(Path(weights))
            self.cache_length = check_length(self.prompt_tokens, self.new_tokens,
                                             int(config.max_position_embeddings), str(weights))
            self.model = load_llm(Path(weights))
            self.weights_digest = weights_sha256(Path(weights))
        self.model_config = architecture(self.model.config)
        self.vocab_size = int(self.model.config.vocab_size)
        self.prefill = Prefill(self.model).eval()
        self.decode = Decode(self.model).eval()

    def units_per_row(self) -> float:
        """Tokens one row generates: its new tokens (the prompt is read, not made)."""
        return float(self.new_tokens)

    def output_shape(self, batch_size: int) -> tuple[int, ...]:
        """The sequences, prompt and new tokens, as `generate` returns them: (B, prompt_tokens + new_tokens)."""
        return (batch_size, self.prompt_tokens + self.new_tokens)

    @classmethod
    def metric_extras(
        cls,
        workload: Mapping[str, Any],
        component_latency_s: Mapping[str, Mapping[str, Any]],
        latency_s: Mapping[str, Any],
        throughput: float,
    ) -> dict[str, Any]:
        # One prefill per batch gives every row its first token: its latency is the time to first token.
        # Each decode call gives every row one more: its latency is the time per output token.
        extras: dict[str, Any] = {}
        for key, component in (("ttft_s", PREFILL), ("tpot_s", DECODE)):
            summary = _summary(component_latency_s, component)
            if summary is not None:
                extras[key] = summary
        if isinstance(throughput, (int, float)) and not isinstance(throughput, bool):
            extras["tokens_per_s"] = throughput
        return extras

    def components(self) -> Mapping[str, nn.Module]:
        return {PREFILL: self.prefill, DECODE: self.decode}

    def new_cache(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        """A zeroed cache of `cache_length` positions for `batch_size` rows, on `device`."""
        from .llm_model import cache_storage

        return cache_storage(self.model.config, batch_size, self.cache_length, device)

    def example_inputs(self, component: str, batch_size: int) -> tuple[torch.Tensor, ...]:
        import torch

        # On the model's device: a meta model (counted for FLOPs, shapes only) gets a meta cache, not gigabytes.
        device = self.model.lm_head.weight.device
        (ids,) = self.make_batch(batch_size, self.seed).inputs
        cache = self.new_cache(batch_size, device)
        if component == PREFILL:
            return ids.to(device), cache
        if component == DECODE:
            # The last step's position: its keys and values land in the cache's last written slot.
            position = torch.tensor([self.cache_length - 2], dtype=torch.int64, device=device)
            return ids[:, :1].to(device), position, cache
        raise KeyError(f"llm has components {PREFILL!r} and {DECODE!r}; got {component!r}")

    def make_batch(self, batch_size: int, seed: int) -> Batch:
        import torch

        rng = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, self.vocab_size, (batch_size, self.prompt_tokens), generator=rng, dtype=torch.int64)
        return Batch(inputs=(ids,), seed=seed, size=batch_size)

    def run(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> torch.Tensor:
        import torch

        (ids,) = batch.inputs
        cache = self.new_cache(ids.shape[0], ids.device)
        token = sessions[PREFILL](ids, cache).argmax(dim=-1, keepdim=True)
        tokens = [token]
        decode = sessions[DECODE]
        # One (1,) position per step, made before the loop: a step allocates nothing but what it computes.
        positions = torch.arange(self.prompt_tokens, self.prompt_tokens + self.new_tokens - 1,
                                 dtype=torch.int64, device=ids.device).split(1)
        for position in positions:
            token = decode(token, position, cache).argmax(dim=-1, keepdim=True)
            tokens.append(token)
        return torch.cat([ids, *tokens], dim=1)

    def calls_per_batch(self) -> Mapping[str, int]:
        return {PREFILL: 1, DECODE: self.new_tokens - 1}

    def fidelity_outputs(self, sessions: Mapping[str, ComponentFn], batch: Batch) -> dict[str, torch.Tensor]:
        import torch

        (ids,) = batch.inputs
        cache = self.new_cache(ids.shape[0], ids.device)
        prefill = sessions[PREFILL](ids, cache)
        # A fixed token, the same on every backend; the cache is the one this backend's prefill wrote.
        position = torch.tensor([self.prompt_tokens], dtype=torch.int64, device=ids.device)
        step = sessions[DECODE](ids[:, :1], position, cache)
        return {"prefill_logits": prefill, "decode_logits": step, "output": self.run(sessions, batch)}

    def ungated_outputs(self) -> Mapping[str, str]:
        return {"output": "greedy tokens: at a near tie an argmax flips under another kernel's rounding and "
                          "every later token differs; the prefill and decode logits gate"}

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "seed": self.seed,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "cache_length": self.cache_length,
            "decoding": "greedy",
            "model": self.model_config,
            "weights": None if self.weights is None else str(self.weights),
            "weights_sha256": self.weights_digest,
        }
