"""The torch side of the Stable Diffusion workload (`sd`): its components, their construction, weight checks.

A weights folder is a diffusers StableDiffusion(XL)Pipeline folder: the UNet
and the VAE are diffusers model folders (checked with `weights`), the text
encoders transformers ones (`config.json` naming CLIPTextModel or
CLIPTextModelWithProjection, and `model.safetensors`, its shard index, or
`pytorch_model.bin`). Checkpoints written by transformers 4 — the published
SD 1.5 and SDXL ones — name CLIPTextModel's tensors under `text_model.` and
some keep the `position_ids` buffer; transformers 5 drops both on load, and so
do the checks here (`legacy_names`). Everything is checked on the meta device
first, the components dry-run there, in the parent before anything is measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from ..bench.errors import UserError
from . import checkpoint
from .sd import (CLIP_BOS, CLIP_EOS, DECODER, DEFAULT_GUIDANCE, TEXT_ENCODER, TEXT_ENCODER_2, TEXT_ENCODERS, UNET,
                 Geometry)
from .sd_presets import SDPreset
from .transformers_folder import quiet
from .vae_model import LatentDecoder, build_random_vae, decoder_needs, latent_geometry
from .weights import (CONFIG_NAME, _shards, check_diffusers_model, dry_run, list_weight_files, load_diffusers_model,
                      public_config, require_folder, weights_sha256)

TextModel = Union[CLIPTextModel, CLIPTextModelWithProjection]
# Each text encoder's class: SDXL's second one adds the projection that makes its pooled embedding.
ENCODER_CLASSES: Mapping[str, type[TextModel]] = {TEXT_ENCODER: CLIPTextModel, TEXT_ENCODER_2: CLIPTextModelWithProjection}
UNET_FOLDER, VAE_FOLDER = "unet", "vae"
CLIP_INDEX = "model.safetensors.index.json"
CLIP_WEIGHTS: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")  # transformers' order
CLIP_MODEL_TYPE = "clip_text_model"
# The CLIPTextConfig fields that make the network; the rest (dtype, versions, names) is left out.
CLIP_KEYS: tuple[str, ...] = (
    "vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
    "max_position_embeddings", "hidden_act", "layer_norm_eps", "attention_dropout", "initializer_range",
    "initializer_factor", "pad_token_id", "bos_token_id", "eos_token_id",
)
SIZE_IDS = 6  # SDXL's micro-conditioning: original size, crop top-left, target size


class PromptEncoder(nn.Module):
    """A CLIP text tower as the pipeline reads it: int64 ids (B, L) → states (B, L, D), or (B, L + 1, D).

    `penultimate`: the states of the last layer but one (SDXL), else the last
    hidden state after the final norm (SD 1.5). `pooled`: append the projected
    pooled embedding as one more row (SDXL's second encoder; it needs the
    projection as wide as the states, as SDXL's 1280 is).
    """

    def __init__(self, model: TextModel, penultimate: bool, pooled: bool) -> None:
        super().__init__()
        self.model = model
        self.penultimate = penultimate
        self.pooled = pooled

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, output_hidden_states=self.penultimate)
        states = out.hidden_states[-2] if self.penultimate else out.last_hidden_state
        if not self.pooled:
            return states
        return torch.cat([states, out.text_embeds[:, None]], dim=1)


class GuidedUNet(nn.Module):
    """The UNet with classifier-free guidance, as StableDiffusionPipeline calls it, in one export-friendly call.

    (sample (B, C, h, w), float timestep (B,), prompt states (B, G, L, D)) → noise (B, C, h, w). Guided
    (scale > 1, G = 2: negative row, then prompt row), the UNet runs 2B rows — every item with the negative
    prompt, then with its prompt — mixed as `uncond + scale · (cond − uncond)`; unguided (G = 1), B rows.
    """

    def __init__(self, unet: UNet2DConditionModel, guidance_scale: float) -> None:
        super().__init__()
        self.unet = unet
        self.guidance_scale = float(guidance_scale)
        self.guided = self.guidance_scale > 1

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, prompt_embeds: torch.Tensor) -> torch.Tensor:
        return self.guide(sample, timestep, prompt_embeds, {})

    def rows(self, per_item: torch.Tensor) -> torch.Tensor:
        """(B, G, ...) → the UNet's rows: the G = 2 branches stacked as diffusers concatenates them."""
        return torch.cat([per_item[:, 0], per_item[:, 1]]) if self.guided else per_item[:, 0]

    def guide(self, sample: torch.Tensor, timestep: torch.Tensor, prompt_embeds: torch.Tensor,
              added: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = sample.shape[0]
        if self.guided:
            sample, timestep = torch.cat([sample, sample]), torch.cat([timestep, timestep])
        # return_dict=False keeps the output a plain tensor, which exporters need.
        out = self.unet(sample, timestep, encoder_hidden_states=self.rows(prompt_embeds),
                        added_cond_kwargs=added or None, return_dict=False)[0]
        if not self.guided:
            return out
        # Slices at the batch, not `chunk(2)`: chunk's ceil-division guard makes torch.export fix the batch size.
        uncond, cond = out[:batch], out[batch:]
        return uncond + self.guidance_scale * (cond - uncond)


class GuidedXLUNet(GuidedUNet):
    """SDXL's UNet with guidance: also the pooled embeddings (B, G, P) and the size ids (B, 6), same for both branches."""

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, prompt_embeds: torch.Tensor,
                pooled_embeds: torch.Tensor, time_ids: torch.Tensor) -> torch.Tensor:
        ids = torch.cat([time_ids, time_ids]) if self.guided else time_ids
        return self.guide(sample, timestep, prompt_embeds, {"text_embeds": self.rows(pooled_embeds), "time_ids": ids})


@dataclass(frozen=True)
class PipelineModels:
    """The models of an SD pipeline, the image size and shapes they make, and the digest of loaded weights."""

    text_encoders: tuple[TextModel, ...]
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    image_size: int
    geometry: Geometry
    weights_sha256: str | None = None
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", TEXT_ENCODERS[: len(self.text_encoders)])

    def public_configs(self) -> dict[str, Any]:
        """Each model's architecture as JSON-friendly data: what `config()` records."""
        texts = {name: clip_architecture(model.config) for name, model in zip(self.names, self.text_encoders)}
        return {**texts, UNET: public_config(self.unet), DECODER: public_config(self.vae)}


def wrap_components(models: PipelineModels, guidance: float) -> dict[str, nn.Module]:
    """The workload's components, by name, in eval mode; only the VAE's decoder half is kept."""
    xl = len(models.text_encoders) == 2
    modules: dict[str, nn.Module] = {TEXT_ENCODER: PromptEncoder(models.text_encoders[0], penultimate=xl, pooled=False)}
    if xl:
        modules[TEXT_ENCODER_2] = PromptEncoder(models.text_encoders[1], penultimate=True, pooled=True)
    modules[UNET] = (GuidedXLUNet if xl else GuidedUNet)(models.unet, guidance)
    modules[DECODER] = LatentDecoder(models.vae)
    return {name: module.eval() for name, module in modules.items()}


def clip_architecture(config: CLIPTextConfig) -> dict[str, Any]:
    return {key: getattr(config, key) for key in CLIP_KEYS}


def build_text_encoder(model_class: type[TextModel], config: CLIPTextConfig, device: str) -> TextModel:
    """A CLIP text model from `config` on `device` (transformers' init), in eval mode, quietly."""
    with quiet(), torch.device(device):
        return model_class(config).eval()


def build_random_pipeline(preset: SDPreset, seed: int) -> PipelineModels:
    """Every model of `preset` with its library's default init, seeded without touching the global RNG."""
    encoders = []
    for name, config in zip(TEXT_ENCODERS, preset.text_encoders):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # The caller's default device: the meta device where the counts are checked (no weights drawn).
            device = str(torch.get_default_device())
            encoders.append(build_text_encoder(ENCODER_CLASSES[name], CLIPTextConfig(**config), device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**preset.unet)
    vae = build_random_vae(preset.vae, seed)
    image_size, geometry = geometry_of(tuple(encoders), unet, vae)
    if image_size != preset.image_size:
        raise ValueError(f"preset bug: the UNet's latents and the VAE do not make {preset.image_size} px images")
    return PipelineModels(tuple(encoders), unet, vae, image_size, geometry)


def _config_at(where: Mapping[str, Path] | None, name: str) -> str:
    return f"the {name} preset" if where is None else repr(str(where[name] / CONFIG_NAME))


def token_ids(encoders: tuple[TextModel, ...], where: Mapping[str, Path] | None) -> tuple[int, int, int]:
    """(prompt length, BOS, EOS): CLIP's tokenizer ids, or a small vocabulary's last two; every encoder must take them."""
    configs = [model.config for model in encoders]
    vocab, length = int(configs[0].vocab_size), int(configs[0].max_position_embeddings)
    bos, eos = (CLIP_BOS, CLIP_EOS) if vocab > CLIP_EOS else (vocab - 2, vocab - 1)
    for name, config in zip(TEXT_ENCODERS, configs):
        if config.vocab_size <= max(eos, 2) or config.max_position_embeddings != length or length < 3:
            raise UserError(f"weights config {_config_at(where, name)}: the text encoders must share a vocabulary of "
                            f"more than 3 ids and one prompt length of at least 3 positions (vocab_size "
                            f"{config.vocab_size}, max_position_embeddings {config.max_position_embeddings})")
    return length, bos, eos


def check_conditioning(encoders: tuple[TextModel, ...], unet: UNet2DConditionModel,
                       where: Mapping[str, Path] | None) -> int:
    """Refuse text encoders whose states the UNet cannot attend to; return the pooled width (0 for SD 1.x)."""
    config, at = unet.config, _config_at(where, UNET)
    widths = [int(model.config.hidden_size) for model in encoders]
    if config.cross_attention_dim != sum(widths):
        raise UserError(f"weights config {at}: cross_attention_dim ({config.cross_attention_dim!r}) must be the text "
                        f"encoders' widths summed ({' + '.join(map(str, widths))})")
    xl = len(encoders) == 2
    if (config.addition_embed_type == "text_time") != xl:
        need = "a UNet with addition_embed_type 'text_time'" if xl else "a text_encoder_2/ (SDXL) for its 'text_time'"
        raise UserError(f"weights config {at}: addition_embed_type is {config.addition_embed_type!r}; "
                        f"this pipeline needs {need}")
    if not xl:
        return 0
    second = encoders[1].config
    if second.projection_dim != second.hidden_size:
        raise UserError(f"weights config {_config_at(where, TEXT_ENCODER_2)}: projection_dim ({second.projection_dim}) "
                        f"must equal hidden_size ({second.hidden_size}), as SDXL's")
    wanted = second.projection_dim + SIZE_IDS * int(config.addition_time_embed_dim)
    if config.projection_class_embeddings_input_dim != wanted:
        raise UserError(f"weights config {at}: projection_class_embeddings_input_dim must be {wanted} (pooled "
                        f"{second.projection_dim} + {SIZE_IDS} × {config.addition_time_embed_dim}), got "
                        f"{config.projection_class_embeddings_input_dim!r}")
    return int(second.projection_dim)


def geometry_of(encoders: tuple[TextModel, ...], unet: UNet2DConditionModel, vae: AutoencoderKL,
                where: Mapping[str, Path] | None = None) -> tuple[int, Geometry]:
    """The image size and shapes a set of models makes together, or a one-line UserError saying why they cannot."""
    config, at = unet.config, _config_at(where, UNET)
    size = config.sample_size
    side = size[0] if isinstance(size, (list, tuple)) and size else size
    if isinstance(side, bool) or not isinstance(side, int) or side < 1:
        raise UserError(f"weights config {at}: sample_size must be a positive integer (or a pair), got {size!r}")
    if config.out_channels != config.in_channels:
        raise UserError(f"weights config {at}: out_channels ({config.out_channels}) must equal in_channels "
                        f"({config.in_channels}): the sampler feeds the predicted noise back into the latents")
    pooled = check_conditioning(encoders, unet, where)
    image_size = side * 2 ** (len(vae.config.block_out_channels) - 1)
    channels, _ = latent_geometry(vae, image_size, None if where is None else where[VAE_FOLDER])
    if channels != config.in_channels:
        raise UserError(f"weights config {_config_at(where, VAE_FOLDER)}: the VAE decodes {channels}-channel latents, "
                        f"the UNet ({at}) makes {config.in_channels}")
    length, bos, eos = token_ids(encoders, where)
    width = int(config.cross_attention_dim)
    return image_size, Geometry(int(config.in_channels), side, length, width, pooled, bos, eos)


# --- weights folders ----------------------------------------------------------


def pipeline_folders(folder: Path) -> dict[str, Path]:
    """The model subfolders of a pipeline folder (text_encoder_2 only where present), or a one-line UserError."""
    folder = require_folder(folder)
    needed = (TEXT_ENCODER, UNET_FOLDER, VAE_FOLDER)
    missing = [name for name in needed if not (folder / name).is_dir()]
    if missing:
        raise UserError(f"weights folder {str(folder)!r} has no {' or '.join(m + '/' for m in missing)} subfolder; "
                        f"sd loads a diffusers StableDiffusion(XL)Pipeline folder (text_encoder/, [text_encoder_2/], "
                        "unet/ and vae/, as save_pretrained writes it)")
    found = [*needed, *([TEXT_ENCODER_2] if (folder / TEXT_ENCODER_2).is_dir() else [])]
    return {name: folder / name for name in found}


def read_clip_config(model_class: type[TextModel], folder: Path) -> CLIPTextConfig:
    """`folder`'s CLIPTextConfig, refused unless it is a JSON object written for `model_class`."""
    path, name = folder / CONFIG_NAME, model_class.__name__
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"weights folder {str(folder)!r} has no readable {CONFIG_NAME} (a transformers model folder, "
                        f"as {name}.save_pretrained writes it): {error}") from error
    if not isinstance(raw, dict):
        raise UserError(f"weights config {str(path)!r} must be a JSON object, got a {type(raw).__name__}")
    architectures, model_type = raw.get("architectures"), raw.get("model_type")
    if (architectures is not None and architectures != [name]) or model_type not in (None, CLIP_MODEL_TYPE):
        raise UserError(f"weights config {str(path)!r} describes {architectures or model_type!r}; sd needs a {name} here")
    try:
        with quiet():
            return CLIPTextConfig(**{key: raw[key] for key in CLIP_KEYS if key in raw})
    except Exception as error:  # transformers' field validation raises several kinds
        raise UserError(f"weights config {str(path)!r} is not a valid {name} config: {' '.join(str(error).split())}") \
            from error


def clip_files(folder: Path) -> tuple[Path, ...]:
    """The checkpoint transformers would read from `folder`: the shards of an index, or one file."""
    if (folder / CLIP_INDEX).is_file():
        return _shards(folder / CLIP_INDEX)
    for name in CLIP_WEIGHTS:
        if (folder / name).is_file():
            return (folder / name,)
    raise UserError(f"weights folder {str(folder)!r} has no {' or '.join(CLIP_WEIGHTS)} ({list_weight_files(folder)})")


def legacy_names(model_class: type[TextModel]) -> Callable[[dict[str, Any]], None]:
    """An in-place renaming of transformers 4's names to `model_class`'s, as transformers 5 loads them."""
    prefix = "text_model." if model_class is CLIPTextModel else ""

    def rename(entries: dict[str, Any]) -> None:
        for name in list(entries):
            if name.endswith("embeddings.position_ids"):  # a constant buffer, no longer saved
                del entries[name]
            elif prefix and name.startswith(prefix):
                entries[name[len(prefix):]] = entries.pop(name)

    return rename


def build_clip(model_class: type[TextModel], folder: Path, device: str) -> TextModel:
    config = read_clip_config(model_class, folder)
    try:
        return build_text_encoder(model_class, config, device)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. heads that do not divide
        raise UserError(f"weights config {str(folder / CONFIG_NAME)!r} is not a valid {model_class.__name__} "
                        f"config: {' '.join(str(error).split())}") from error


def check_clip_folder(model_class: type[TextModel], folder: Path) -> TextModel:
    """Check a text encoder folder from its config and checkpoint headers; return the model on the meta device."""
    model = build_clip(model_class, folder, "meta")
    found = checkpoint.renamed(checkpoint.read_checkpoint(clip_files(folder)), legacy_names(model_class))
    checkpoint.check(found, checkpoint.model_specs(model), model_class.__name__)
    return model


def load_clip_folder(model_class: type[TextModel], folder: Path) -> TextModel:
    """Load a text encoder folder after the checks the parent ran; in eval mode, on the CPU."""
    model = build_clip(model_class, folder, "cpu")
    checkpoint.load_checked(model, clip_files(folder), model_class.__name__, rename=legacy_names(model_class))
    return model.eval()


def meta_inputs(models: PipelineModels, modules: Mapping[str, nn.Module]) -> dict[str, tuple[torch.Tensor, ...]]:
    """Batch-1 inputs of every component on the meta device, for a dry run."""
    g, meta = models.geometry, "meta"
    latents = torch.empty(1, g.latent_channels, g.latent_size, g.latent_size, device=meta)
    rows = 2 if modules[UNET].guided else 1
    unet = [latents, torch.empty(1, device=meta), torch.empty(1, rows, g.prompt_length, g.text_width, device=meta)]
    if TEXT_ENCODER_2 in modules:
        unet += [torch.empty(1, rows, g.pooled_width, device=meta), torch.empty(1, SIZE_IDS, device=meta)]
    ids = torch.zeros(1, g.prompt_length, dtype=torch.int64, device=meta)
    return {**{name: (ids,) for name in models.names}, UNET: tuple(unet), DECODER: (latents,)}


def check_pipeline_folder(folder: Path) -> None:
    """Check an SD pipeline folder from configs and weight headers, every component dry-run on the meta device."""
    where = pipeline_folders(folder)
    names = [name for name in TEXT_ENCODERS if name in where]
    encoders = tuple(check_clip_folder(ENCODER_CLASSES[name], where[name]) for name in names)
    unet = check_diffusers_model(UNet2DConditionModel, where[UNET_FOLDER])
    vae = check_diffusers_model(AutoencoderKL, where[VAE_FOLDER], decoder_needs)
    image_size, geometry = geometry_of(encoders, unet, vae, where)
    models = PipelineModels(encoders, unet, vae, image_size, geometry)
    modules = wrap_components(models, DEFAULT_GUIDANCE)
    for name, inputs in meta_inputs(models, modules).items():
        dry_run(modules[name], inputs, where[name if name != DECODER else VAE_FOLDER])


def load_pipeline(folder: Path) -> PipelineModels:
    """Load an SD pipeline folder, refusing what `check_pipeline_folder` refuses; record a digest of every model."""
    where = pipeline_folders(folder)
    names = [name for name in TEXT_ENCODERS if name in where]
    encoders = tuple(load_clip_folder(ENCODER_CLASSES[name], where[name]) for name in names)
    unet = load_diffusers_model(UNet2DConditionModel, where[UNET_FOLDER])
    vae = load_diffusers_model(AutoencoderKL, where[VAE_FOLDER], decoder_needs)
    image_size, geometry = geometry_of(encoders, unet, vae, where)
    digest = hashlib.sha256()
    for name in sorted(where):
        digest.update(f"{name}:{weights_sha256(where[name])}\n".encode())
    return PipelineModels(encoders, unet, vae, image_size, geometry, digest.hexdigest())
