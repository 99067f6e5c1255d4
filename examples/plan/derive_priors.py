"""Recompute every prior efficiency in reports/plan/data/priors.toml from its cited timings and FLOP counts.

    python examples/plan/derive_priors.py            # print the measurement and prior tables
    python examples/plan/derive_priors.py --check    # exit 1 if the stored numbers differ by > 0.5 %
    python examples/plan/derive_priors.py --update   # rewrite the derived section of priors.toml

A `roofline` projection (a device known only from its spec sheet) divides the
roofline time by a prior efficiency. Here each efficiency is

    efficiency = roofline time / measured time,   roofline time = FLOPs / peak

for a published timing of a diffusion pipeline whose architecture is public, on
a device whose peak at that precision is in hardware.csv (or cited in the
TOML's [device.*] tables). The FLOPs are counted, never copied: each model is
built from its config on the meta device (no weights, no download) and run
once under torch.utils.flop_counter.FlopCounterMode with math attention (the
fused SDPA kernels are invisible to the counter). Classifier-free guidance
doubles the UNet batch, so one image costs

    steps x UNet(batch 2) + text encoder(2 prompts) + VAE decode(1 latent)

and a timing of the denoising loop alone (it/s, s/it) costs batch x UNet(batch 2)
per iteration. Not counted, with their bound: the SD v1 safety checker (a CLIP
ViT-L/14 image encoder, about 0.16 TFLOP, < 0.5 % of a 20-step image) and the
schedulers' elementwise updates (< 0.01 %). The text encoders are built as
plain pre-norm transformer stacks of CLIP's widths (transformers is not a
dependency); their FLOPs are below 0.3 % of an image either way.
"""

from __future__ import annotations

import argparse
import math
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import aigcbench.reports.plan as plan_pkg

DATA = Path(plan_pkg.__file__).parent / "data"
TOML_PATH = DATA / "priors.toml"
CATALOG_PATH = DATA / "hardware.csv"
MARKER = "# ---- derived: written by `python examples/plan/derive_priors.py --update`; do not edit below ----"
PEAK_COLUMNS = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")

# Stable Diffusion v1.x (v1.4 and v1.5 share it): CompVis v1-inference.yaml
# (model_channels 320, channel_mult 1,2,4,4, attention at 4,2,1, 8 heads,
# context 768) in diffusers' names; 859.52 M parameters, as published.
SD_V1_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
# Stable Diffusion 2.x base: the same UNet with 64-channel heads, context 1024
# (OpenCLIP ViT-H) and linear projections in the transformers; 865.91 M parameters.
SD_V2_UNET = SD_V1_UNET | dict(attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, use_linear_projection=True)
# SDXL base 1.0: generative-models sd_xl_base.yaml (channel_mult 1,2,4,
# transformer depth 1,2,10 from the second level, 64-channel heads, context
# 2048, adm_in_channels 2816); 2.567 B parameters.
SDXL_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
    attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
    addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)
# The KL autoencoder of both (ch 128, ch_mult 1,2,4,4, 2 res blocks, z 4).
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
)
CLIP_L = dict(width=768, layers=12, heads=12, mlp=3072)  # OpenAI CLIP ViT-L/14 text tower
OPENCLIP_H = dict(width=1024, layers=23, heads=16, mlp=4096)  # ViT-H/14 text tower, penultimate layer
OPENCLIP_BIGG = dict(width=1280, layers=32, heads=20, mlp=5120)  # OpenCLIP ViT-bigG/14 text tower
TOKENS = 77
MODELS = {
    "sd-v1": dict(unet=SD_V1_UNET, latent=64, text=(CLIP_L,)),
    "sd-v2-base": dict(unet=SD_V2_UNET, latent=64, text=(OPENCLIP_H,)),
    "sdxl-base": dict(unet=SDXL_UNET, latent=128, text=(CLIP_L, OPENCLIP_BIGG)),
}


def count(fn) -> float:
    """FLOPs of one call of `fn` on meta tensors, attention forced onto the counted math path."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return float(counter.get_total_flops())


def unet_flops(config: dict, latent: int) -> float:
    """One denoising step for one image: the UNet on a batch of 2 (classifier-free guidance)."""
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**config)
        sample = torch.randn(2, 4, latent, latent)
        text = torch.randn(2, TOKENS, config["cross_attention_dim"])
        extra = {}
        if config.get("addition_embed_type") == "text_time":
            extra = {"added_cond_kwargs": {"text_embeds": torch.randn(2, 1280), "time_ids": torch.randn(2, 6)}}
    return count(lambda: unet(sample, torch.tensor([999.0, 999.0], device="meta"), text, **extra))


def vae_decode_flops(latent: int) -> float:
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        vae = AutoencoderKL(**VAE)
        z = torch.randn(1, 4, latent, latent)
    return count(lambda: vae.decode(z))


def text_flops(towers: tuple[dict, ...]) -> float:
    """The text encoders on 2 prompts (the prompt and the negative or empty one), 77 tokens each."""
    total = 0.0
    for t in towers:
        with torch.device("meta"):
            layer = torch.nn.TransformerEncoderLayer(
                t["width"], t["heads"], t["mlp"], dropout=0.0, batch_first=True, norm_first=True
            )
            # train(): the eval-mode fast path is one fused op the counter cannot see.
            stack = torch.nn.TransformerEncoder(layer, t["layers"], enable_nested_tensor=False).train()
            tokens = torch.randn(2, TOKENS, t["width"])
        total += count(lambda: stack(tokens))
    return total


def model_flops() -> dict[str, dict[str, float]]:
    """Per image, by model: one UNet step (batch 2), the text encoders, the VAE decode."""
    return {
        name: {
            "unet_step": unet_flops(m["unet"], m["latent"]),
            "text": text_flops(m["text"]),
            "vae": vae_decode_flops(m["latent"]),
        }
        for name, m in MODELS.items()
    }


def column(precision: str) -> str:
    """hardware.csv's column for a precision's peak (int8 is in TOPS, the rest in TFLOPS)."""
    return "int8_tops" if precision == "int8" else f"{precision}_tflops"


def device_peaks(doc: dict) -> dict[str, tuple[str, dict[str, float]]]:
    """device id -> (kind, {precision: FLOP/s}) from hardware.csv, then the TOML's cited extra devices."""
    peaks = {}
    for _, row in pd.read_csv(CATALOG_PATH).iterrows():
        values = {p: float(row[column(p)]) * 1e12 for p in PEAK_COLUMNS if pd.notna(row[column(p)])}
        peaks[row["device_id"]] = (row["kind"], values)
    for device_id, d in doc.get("device", {}).items():
        if "flop_per_cycle" in d:  # derived like the catalog's CPUs: cores x clock x FLOP/cycle
            values = {p: d["cores"] * d["ghz"] * 1e9 * f for p, f in d["flop_per_cycle"].items()}
        else:
            values = {p: v * 1e12 * d.get("scale", 1.0) for p, v in d["peaks_tflops"].items()}
        peaks[device_id] = (d["kind"], values)
    return peaks


def measurements(doc: dict) -> list[dict]:
    """Every row of every [[source]], with the source's defaults filled in and an id."""
    rows = []
    for src in doc["source"]:
        for r in src["rows"]:
            row = {k: v for k, v in src.items() if k != "rows"} | r
            row["ref"] = row["ref"].replace("<system>", r.get("system", "<system>"))
            parts = [src["id"], r["device"], f"b{r['batch']}" if "batch" in r else None, r.get("label")]
            row["id"] = "/".join(p for p in parts if p)
            rows.append(row)
    return rows


def efficiency(row: dict, flops: dict, peak: float) -> float:
    """Roofline time over measured time for one published timing (units in priors.toml's header)."""
    f = flops[row["model"]]
    image = row.get("steps", 0) * f["unet_step"] + f["text"] + f["vae"]
    capacity = row.get("devices", 1) * peak
    value, batch = row["value"], row.get("batch", 1)
    match row["unit"]:
        case "it/s":
            return batch * f["unet_step"] * value / capacity
        case "s/it":
            return batch * f["unet_step"] / value / capacity
        case "s/batch":
            return batch * image / value / capacity
        case "images/s":
            return value * image / capacity
    raise ValueError(f"unknown unit {row['unit']!r} in {row['id']}")


def measured_efficiencies(doc: dict, flops: dict) -> pd.DataFrame:
    peaks = device_peaks(doc)
    out = []
    for row in measurements(doc):
        kind, values = peaks[row["device"]]
        out.append({
            "id": row["id"], "kind": kind, "peak": row["peak"], "device": row["device"],
            "ran": row["precision"], "batch": row.get("batch"), "value": row["value"], "unit": row["unit"],
            "efficiency": efficiency(row, flops, values[row["peak"]]), "ref": row["ref"],
        })
    return pd.DataFrame(out)


def catalog_pairs() -> set[tuple[str, str]]:
    """Every (kind, precision) hardware.csv has a peak for: each needs a prior, measured or fallback."""
    catalog = pd.read_csv(CATALOG_PATH)
    return {(row["kind"], p) for _, row in catalog.iterrows() for p in PEAK_COLUMNS if pd.notna(row[column(p)])}


def measured_priors(table: pd.DataFrame, doc: dict) -> dict[tuple[str, str], dict]:
    """Median and min..max band of the efficiencies per (kind, peak column)."""
    notes = doc.get("prior_note", {})
    priors = {}
    for (kind, peak), group in table.groupby(["kind", "peak"]):
        eff = group["efficiency"].to_numpy()
        devices = ", ".join(sorted(group["device"].unique()))
        basis = (f"Median of {len(eff)} public timings ({devices}) as roofline time at the {peak} peak "
                 f"over measured time; band = min..max over devices and batch sizes.")
        if note := notes.get(f"{kind}/{peak}"):
            basis += " " + note
        priors[(kind, peak)] = {
            "efficiency": float(np.median(eff)), "low": float(eff.min()), "high": float(eff.max()),
            "n": len(eff), "basis": basis, "sources": sorted(group["ref"].unique()), "fallback": False,
        }
    return priors


def fallback(donors: dict[tuple[str, str], dict], widen: float, what: str) -> dict:
    """The documented rule: the most conservative donor, its band widened `widen` times each side."""
    key = min(donors, key=lambda k: donors[k]["efficiency"])
    d = donors[key]
    return {
        "efficiency": d["efficiency"], "low": d["low"] / widen, "high": min(1.0, d["high"] * widen), "n": 0,
        "basis": (f"FALLBACK (no public timing for {what}): the most conservative measured prior, "
                  f"{key[0]} {key[1]} ({d['efficiency']:.3g}), with its band widened {widen:g}x each side."),
        "sources": d["sources"], "fallback": True,
    }


def all_priors(table: pd.DataFrame, doc: dict) -> tuple[dict, dict]:
    """Measured priors, a fallback for every other catalog (kind, precision), and the [default] one."""
    widen = doc["rule"]["fallback_widen"]
    measured = measured_priors(table, doc)
    priors = dict(measured)
    for kind, precision in sorted(catalog_pairs() - set(measured)):
        same_kind = {k: v for k, v in measured.items() if k[0] == kind}
        priors[(kind, precision)] = fallback(same_kind or measured, widen, f"{kind} {precision}")
    return priors, fallback(measured, widen, "this device kind and precision")


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, list):
        return "[\n" + "".join(f"  {toml_value(x)},\n" for x in v) + "]"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(v)


def derived_text(flops: dict, table: pd.DataFrame, priors: dict, default: dict) -> str:
    """The section below MARKER: FLOP counts, each timing's efficiency, the priors."""
    out = [MARKER, ""]
    for name, f in flops.items():
        out += [f"[derived.flops.{name}]  # FLOPs per image"] + [f"{k} = {v:.6g}" for k, v in f.items()] + [""]
    out += ["[derived.efficiency]"] + [f'"{r.id}" = {r.efficiency:.6g}' for r in table.itertuples()] + [""]
    for (kind, precision), p in sorted(priors.items()):
        out += [f"[prior.{kind}.{precision}]"] + [f"{k} = {toml_value(v)}" for k, v in p.items()] + [""]
    out += ["[default]"] + [f"{k} = {toml_value(v)}" for k, v in default.items()]
    return "\n".join(out) + "\n"


def differences(stored: dict, flops: dict, table: pd.DataFrame, priors: dict, tol: float) -> list[str]:
    """What --check reports: every stored number off by more than `tol` (relative), or missing."""
    expected = {f"flops {m} {k}": v for m, f in flops.items() for k, v in f.items()}
    expected |= {f"efficiency {r.id}": r.efficiency for r in table.itertuples()}
    expected |= {f"prior {k[0]} {k[1]} {f}": p[f] for k, p in priors.items() for f in ("efficiency", "low", "high")}
    derived = stored.get("derived", {})
    have = {f"flops {m} {k}": v for m, f in derived.get("flops", {}).items() for k, v in f.items()}
    have |= {f"efficiency {i}": v for i, v in derived.get("efficiency", {}).items()}
    have |= {f"prior {kind} {prec} {f}": p[f] for kind, by in stored.get("prior", {}).items()
             for prec, p in by.items() for f in ("efficiency", "low", "high")}
    bad = [f"{k}: stored {have.get(k)}, recomputed {v:.6g}" for k, v in expected.items()
           if k not in have or not math.isclose(have[k], v, rel_tol=tol)]
    return bad + [f"{k}: stored but no longer derived" for k in sorted(set(have) - set(expected))]


def print_tables(table: pd.DataFrame, priors: dict) -> None:
    with pd.option_context("display.width", 200, "display.max_rows", 500, "display.max_colwidth", 60):
        print(table[["id", "kind", "peak", "ran", "value", "unit", "efficiency"]].to_string(index=False))
        rows = [{"kind": k, "precision": p, "efficiency": v["efficiency"], "low": v["low"], "high": v["high"],
                 "n": v["n"], "fallback": v["fallback"]} for (k, p), v in sorted(priors.items())]
        print()
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.3f}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if priors.toml differs from the recomputation")
    mode.add_argument("--update", action="store_true", help="rewrite the derived section of priors.toml")
    args = parser.parse_args()
    text = TOML_PATH.read_text()
    inputs = text.split(MARKER)[0]
    doc = tomllib.loads(inputs)
    flops = model_flops()
    table = measured_efficiencies(doc, flops)
    priors, default = all_priors(table, doc)
    print_tables(table, priors)
    if args.update:
        TOML_PATH.write_text(inputs.rstrip("\n") + "\n\n" + derived_text(flops, table, priors, default))
        print(f"\nwrote {TOML_PATH}")
    if args.check:
        bad = differences(tomllib.loads(text), flops, table, priors, doc["rule"]["check_tolerance"])
        for line in bad:
            print("MISMATCH", line, file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
