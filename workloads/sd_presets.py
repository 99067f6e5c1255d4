"""The sizes of `sd`: each model's config as its checkpoint publishes it, and the tiny shapes the tests run.

Sources: runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0,
each model folder's config.json; the parameter counts they make are in `sd`'s
docstring and checked on the meta device by tests/test_workload_sd.py. Plain
data: no torch, diffusers or transformers is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .dit import TINY_VAE
from .vae import SD_VAE_CONFIG

# runwayml/stable-diffusion-v1-5's unet/config.json.
SD15_UNET: Mapping[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}

# stabilityai/stable-diffusion-xl-base-1.0's unet/config.json (2816 = 1280 pooled + 6 × 256 size embeddings).
SDXL_UNET: Mapping[str, Any] = {
    **SD15_UNET,
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": (5, 10, 20),
    "block_out_channels": (320, 640, 1280),
    "cross_attention_dim": 2048,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": (1, 2, 10),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "use_linear_projection": True,
}

# text_encoder/config.json of both checkpoints (openai/clip-vit-large-patch14's text tower). The
# bos/eos ids are the legacy ones the published configs carry; eos 2 selects transformers' argmax pooling.
CLIP_L14: Mapping[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
    "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

# SDXL's text_encoder_2/config.json (laion CLIP-ViT-bigG-14's text tower).
CLIP_G14: Mapping[str, Any] = {**CLIP_L14, "hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20,
                               "num_hidden_layers": 32, "hidden_act": "gelu", "projection_dim": 1280}

SDXL_VAE: Mapping[str, Any] = {**SD_VAE_CONFIG, "scaling_factor": 0.13025}

TINY_CLIP: Mapping[str, Any] = {**CLIP_L14, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                                "num_hidden_layers": 2, "projection_dim": 32, "vocab_size": 1000}
TINY_UNET: Mapping[str, Any] = {
    **SD15_UNET,
    "attention_head_dim": 2,
    "block_out_channels": (32, 64),
    "cross_attention_dim": 32,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 8,
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
}
# SDXL's structure at the tiny size (not a size of its own; the tests run it): two encoders of widths
# 32 and 48, so the UNet attends to 80 channels and embeds 48 pooled + 6 × 8 size channels.
TINY_CLIP_2: Mapping[str, Any] = {**TINY_CLIP, "hidden_size": 48, "intermediate_size": 96, "projection_dim": 48,
                                  "hidden_act": "gelu"}
TINY_XL_UNET: Mapping[str, Any] = {
    **SDXL_UNET,
    "attention_head_dim": (2, 4),
    "block_out_channels": (32, 64),
    "cross_attention_dim": 80,
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 96,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 8,
    "transformer_layers_per_block": (1, 2),
    "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
}


@dataclass(frozen=True)
class SDPreset:
    """A UNet config, one text encoder config per encoder (one: SD 1.x; two: SDXL), a VAE config, the image side."""

    unet: Mapping[str, Any]
    text_encoders: tuple[Mapping[str, Any], ...]
    vae: Mapping[str, Any]
    image_size: int


TINY_XL = SDPreset(TINY_XL_UNET, (TINY_CLIP, TINY_CLIP_2), {**TINY_VAE, "scaling_factor": 0.13025}, 64)
PRESETS: dict[str, SDPreset] = {
    "tiny": SDPreset(TINY_UNET, (TINY_CLIP,), TINY_VAE, 64),
    "base": SDPreset(SD15_UNET, (CLIP_L14,), SD_VAE_CONFIG, 512),
    "large": SDPreset(SDXL_UNET, (CLIP_L14, CLIP_G14), SDXL_VAE, 1024),
}
