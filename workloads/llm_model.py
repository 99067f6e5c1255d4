"""The torch side of the text-decoder workload (`llm`): the cached prefill and decode calls, construction, weights.

Both components wrap one `LlamaForCausalLM` and run transformers' own
decoder layers (`LlamaDecoderLayer`: its RMSNorms, rotary embedding, GQA
attention through the SDPA interface, SwiGLU MLP); only the cache is ours.
A layer hands its keys and values to the cache object it is given
(`cache.update(k, v, layer_idx)`, the contract of transformers' `Cache`) and
attends over what that returns; `TensorCache` answers by writing them into
the pipeline's preallocated tensor in place (`index_copy_` at the call's
positions, as transformers' `StaticCache` does) and returning its keys and
values up to the length the call attends over.

The cache travels as raw int32 storage, reinterpreted in the model's compute
dtype inside the call (`kv_view`). A session casts every floating-point
input to its precision (an fp16 session would cast an fp32 cache into a
fresh copy, and the writes would be lost with it), and never touches an
integer one; 4-byte words hold one fp32 value or two fp16/bf16 ones, so the
one allocation serves every precision. Its layout, in compute-dtype values:
(layers, 2 = keys/values, batch, kv heads, cache length, head dim).

- prefill(ids (B, P) int64, cache) → logits of the last position (B, vocab):
  positions 0..P−1 written, causal attention among them.
- decode(token (B, 1) int64, position (1,) int64, cache) → logits (B, vocab):
  the token's keys and values written at `position`, attention over the
  whole cache with positions after it masked. Every step has the same
  shapes, so a compiled decode is one graph for all steps (a static cache's
  reason to exist); the work is that of the full cache length, masked, and
  that is what the FLOP counter counts.

The final norm and the LM head run on the last position only, as
`generate` does (`logits_to_keep=1`); RMSNorm is per position, so the logits are the
full model's at that position.

A weights folder is what transformers writes and the Hub publishes: a
`config.json` naming LlamaForCausalLM (model_type "llama") and
`model.safetensors`, a `model.safetensors.index.json` with its shards, or
`pytorch_model.bin`. It is checked from the config and the checkpoint's
headers against the model built on the meta device, then dry-run there
(a prefill and a decode step), in the parent before anything is measured;
the worker runs the same checks before it loads. Per-layer `inv_freq` tables
of old conversions are dropped (recomputed from the config, as transformers
does); a tied head (`tie_word_embeddings`) needs no `lm_head.weight`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

try:  # transformers 5's configs validate their fields with huggingface_hub's strict dataclasses
    from huggingface_hub.errors import StrictDataclassError
except ImportError:  # an older hub: no field validation, nothing of this kind to catch
    StrictDataclassError = ValueError  # type: ignore[misc, assignment]

from ..bench.errors import UserError
from . import checkpoint
from .transformers_folder import MAX_SIZE, check_kind, is_size, quiet, read_config
from .weights import CONFIG_NAME, _shards, list_weight_files, require_folder

MODEL_NAME = "LlamaForCausalLM"
MODEL_TYPE = "llama"
CACHE_STORAGE = torch.int32
# What transformers' from_pretrained reads, in its order: a shard index, one safetensors file, a torch file.
WEIGHTS_INDEX = "model.safetensors.index.json"
WEIGHT_FILES: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
# Llama checkpoints converted by transformers < 4.31 hold each layer's rotary table; it is recomputed from
# the config (a non-persistent buffer now), and transformers drops it on load as well.
STALE_SUFFIX = "rotary_emb.inv_freq"
# The sizes of a config the workload reads, each a positive integer; bounded so that a typo is refused.
SIZE_KEYS: tuple[str, ...] = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                              "num_attention_heads", "max_position_embeddings")


class TensorCache:
    """The cache a decoder layer writes to and reads from: views of one tensor, written in place."""

    def __init__(self, kv: torch.Tensor, positions: torch.Tensor, length: int) -> None:
        self.kv, self.positions, self.length = kv, positions, length

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        cached_keys, cached_values = self.kv[layer_idx, 0], self.kv[layer_idx, 1]
        cached_keys.index_copy_(2, self.positions, keys)
        cached_values.index_copy_(2, self.positions, values)
        return cached_keys[:, :, : self.length], cached_values[:, :, : self.length]


def head_dim(config: LlamaConfig) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def cache_storage(config: LlamaConfig, batch_size: int, length: int, device: torch.device | str) -> torch.Tensor:
    """A zeroed cache for `batch_size` sequences of `length` positions, as int32 storage.

    Zeros, not empty memory: masked positions get zero attention weight, and 0 × NaN (a stray bit
    pattern) would still be NaN.
    """
    shape = (config.num_hidden_layers, 2, batch_size, config.num_key_value_heads, length, head_dim(config))
    return torch.zeros(shape, dtype=CACHE_STORAGE, device=device)


def kv_view(storage: torch.Tensor, dtype: torch.dtype, dim: int) -> torch.Tensor:
    """The int32 storage as keys and values in `dtype`: 1 value per word in fp32, the first `dim` of 2 in fp16."""
    return storage.view(dtype)[..., :dim]


def last_logits(model: LlamaForCausalLM, ids: torch.Tensor, positions: torch.Tensor, cache: TensorCache,
                mask: torch.Tensor | None) -> torch.Tensor:
    """transformers' decoder layers over `ids` at `positions`, with `cache`; the last position's logits (B, vocab)."""
    inner = model.model
    hidden = inner.embed_tokens(ids)
    position_ids = positions[None]
    embeddings = inner.rotary_emb(hidden, position_ids=position_ids)
    for layer in inner.layers:
        hidden = layer(hidden, attention_mask=mask, position_ids=position_ids, cache=cache,
                       position_embeddings=embeddings)
    return model.lm_head(inner.norm(hidden[:, -1]))


class Prefill(nn.Module):
    """(prompt ids (B, P) int64, cache storage) → last-position logits (B, vocab); keys/values of 0..P−1 cached."""

    def __init__(self, model: LlamaForCausalLM) -> None:
        super().__init__()
        self.model = model
        self.head_dim = head_dim(model.config)

    def forward(self, ids: torch.Tensor, storage: torch.Tensor) -> torch.Tensor:
        kv = kv_view(storage, self.model.lm_head.weight.dtype, self.head_dim)
        length = ids.shape[1]
        positions = torch.arange(length, device=ids.device)
        # No mask: the SDPA interface runs causal attention over the P keys returned.
        return last_logits(self.model, ids, positions, TensorCache(kv, positions, length), None)


class Decode(nn.Module):
    """(token (B, 1) int64, position (1,) int64, cache storage) → logits (B, vocab); its keys/values cached."""

    def __init__(self, model: LlamaForCausalLM) -> None:
        super().__init__()
        self.model = model
        self.head_dim = head_dim(model.config)

    def forward(self, token: torch.Tensor, position: torch.Tensor, storage: torch.Tensor) -> torch.Tensor:
        kv = kv_view(storage, self.model.lm_head.weight.dtype, self.head_dim)
        length = kv.shape[-2]
        positions = position.reshape(1)
        # True where the query may attend: every cached position up to its own, shared by batch and heads.
        mask = (torch.arange(length, device=token.device) <= positions)[None, None, None, :]
        return last_logits(self.model, token, positions, TensorCache(kv, positions, length), mask)


def make_config(values: Mapping[str, Any]) -> LlamaConfig:
    """A LlamaConfig that runs attention through SDPA (transformers' default where torch has it)."""
    with quiet():
        return LlamaConfig(**values, attn_implementation="sdpa")


def build_model(config: LlamaConfig, device: str) -> LlamaForCausalLM:
    """LlamaForCausalLM from `config` on `device`, in eval mode, the caller's RNG left alone."""
    with quiet(), torch.random.fork_rng(devices=[]), torch.device(device):
        return LlamaForCausalLM(config).eval()


def build_random_model(values: Mapping[str, Any], seed: int) -> LlamaForCausalLM:
    """LlamaForCausalLM with transformers' init (N(0, initializer_range)), determined by `seed`.

    On the meta device (an enclosing `torch.device("meta")`) nothing is allocated or initialised.
    """
    with quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(make_config(values))
    return model.eval()


def architecture(config: LlamaConfig) -> dict[str, Any]:
    """The config as recorded: JSON data without transformers' bookkeeping (dtype, version, ids)."""
    data = config.to_dict()
    drop = {"transformers_version", "dtype", "torch_dtype", "architectures", "_name_or_path", "use_cache",
            "bos_token_id", "eos_token_id", "pad_token_id", "output_attentions", "output_hidden_states",
            "id2label", "label2id", "return_dict", "problem_type", "chunk_size_feed_forward", "is_encoder_decoder"}
    return {k: v for k, v in sorted(data.items()) if k not in drop and not k.startswith("_")}


# --- a weights folder: config.json and the checkpoint transformers would read ---------------------------

# What a config.json says beside the architecture, dropped before LlamaConfig sees it: the dtype it was
# saved in (the harness builds fp32 and casts per session) and the attention kernel (always SDPA here).
NOT_ARCHITECTURE: tuple[str, ...] = ("torch_dtype", "dtype", "attn_implementation", "_attn_implementation",
                                     "architectures", "_name_or_path", "transformers_version")
LM_HEAD = "lm_head.weight"


def _check_sizes(config: Mapping[str, Any], where: str) -> None:
    """The sizes the network is made of: positive integers, heads that divide as attention needs."""
    for key in (*SIZE_KEYS, "num_key_value_heads", "head_dim"):
        if config.get(key) is not None and not is_size(config[key]):
            raise UserError(f"weights config {where!r}: {key} must be an integer from 1 to {MAX_SIZE}, "
                            f"got {config[key]!r}")
    heads = config.get("num_attention_heads")
    kv_heads = config.get("num_key_value_heads")
    if heads is not None and kv_heads is not None and heads % kv_heads:
        raise UserError(f"weights config {where!r}: num_attention_heads ({heads}) must be a multiple of "
                        f"num_key_value_heads ({kv_heads}): each key/value head serves a group of query heads")
    hidden = config.get("hidden_size")
    if heads is not None and hidden is not None and config.get("head_dim") is None and hidden % heads:
        raise UserError(f"weights config {where!r}: hidden_size ({hidden}) must be a multiple of "
                        f"num_attention_heads ({heads}) when the config sets no head_dim")


def read_llm_config(folder: Path) -> LlamaConfig:
    """The LlamaConfig of `folder`, its kind and sizes checked; bookkeeping keys are left out."""
    raw = read_config(folder, MODEL_NAME)
    where = str(folder / CONFIG_NAME)
    check_kind(raw, where, "llm", MODEL_NAME, (MODEL_TYPE,))
    _check_sizes(raw, where)
    try:
        return make_config({k: v for k, v in raw.items() if k not in NOT_ARCHITECTURE})
    except (TypeError, ValueError, KeyError, StrictDataclassError) as error:  # a rope_scaling of the wrong shape
        raise UserError(f"weights config {where!r} is not a valid {MODEL_NAME} config: "
                        f"{' '.join(str(error).split())}") from error


def llm_files(folder: Path) -> tuple[Path, ...]:
    """The checkpoint files transformers would read from `folder`: a shard index's shards, or one file."""
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        return _shards(index)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return (folder / name,)
    raise UserError(f"weights folder {str(folder)!r} has no {WEIGHTS_INDEX}, {' or '.join(WEIGHT_FILES)} "
                    f"({list_weight_files(folder)})")


def drop_stale(state: dict[str, Any]) -> None:
    """Remove the per-layer rotary tables of old conversions (recomputed from the config), in place."""
    for name in [n for n in state if n.endswith(STALE_SUFFIX)]:
        del state[name]


def needs(config: LlamaConfig) -> Callable[[str], bool]:
    """Every tensor, but the LM head only where it is not the embedding itself (tied, as some small Llamas)."""
    if getattr(config, "tie_word_embeddings", False):
        return lambda name: name != LM_HEAD
    return checkpoint.every_tensor


def dry_run(model: LlamaForCausalLM, folder: Path, length: int = 2) -> None:
    """Prefill and one decode step of the meta-device `model` on meta inputs: a config that cannot run fails here."""
    config = model.config
    storage = cache_storage(config, 1, length, "meta")
    ids = torch.zeros(1, length - 1, dtype=torch.int64, device="meta")
    try:
        with torch.no_grad(), quiet():
            Prefill(model)(ids, storage)
            Decode(model)(ids[:, :1], torch.zeros(1, dtype=torch.int64, device="meta"), storage)
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"weights config {str(folder / CONFIG_NAME)!r} builds a {MODEL_NAME} that cannot "
                        f"run: {reason}") from error


def check_llm_folder(folder: Path) -> LlamaForCausalLM:
    """Check a Llama folder from its config and checkpoint headers; return the model on the meta device."""
    folder = require_folder(folder)
    config = read_llm_config(folder)
    model = build_model(config, "meta")
    found = checkpoint.renamed(checkpoint.read_checkpoint(llm_files(folder)), drop_stale)
    checkpoint.check(found, checkpoint.model_specs(model), MODEL_NAME, needs(config))
    dry_run(model, folder)
    return model


def load_llm(folder: Path) -> LlamaForCausalLM:
    """Load a Llama folder after the checks the parent ran; in eval mode, fp32, on the CPU."""
    check_llm_folder(folder)
    config = read_llm_config(folder)
    model = build_model(config, "cpu")
    checkpoint.load_checked(model, llm_files(folder), MODEL_NAME, needs(config), drop_stale)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()  # the head is the embedding again, whichever of the two names the file held
    return model.eval()
