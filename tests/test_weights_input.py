"""`--weights DIR` is checked in the parent before anything is measured or stored (issue 10, item 2).

Each bad folder is refused with exit 2 and one stderr line naming the file
and, where there is one, the tensor; the store and the JSON target are left
as they were. A folder is made the ways a user makes one: `torch.save` of a
DCGAN generator's state_dict, diffusers' `save_pretrained` for the VAE and
the UNet; each case then damages one thing in a copy of it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from aigcbench.bench.errors import UserError
from aigcbench.bench.store import Store
from aigcbench.workloads import registry
from aigcbench.workloads.checkpoint import CheckpointError
from aigcbench.bench.cli import app
from tests.test_cli import FAST, cli, runner

WORKLOADS = ("dcgan", "vae", "ddpm")
# Where the model's files sit inside the --weights folder: the VAE as in a pipeline folder.
MODEL_DIR = {"dcgan": ".", "vae": "vae", "ddpm": "."}
SAFETENSORS = {"dcgan": "generator.safetensors", "vae": "diffusion_pytorch_model.safetensors",
               "ddpm": "diffusion_pytorch_model.safetensors"}
TORCH_FILE = {"dcgan": "generator.pt", "vae": "diffusion_pytorch_model.bin", "ddpm": "diffusion_pytorch_model.bin"}
# One tensor each model needs (for the VAE, one of the decoder's: the encoder may be absent).
NEEDED = {"dcgan": "main.0.weight", "vae": "decoder.conv_in.weight", "ddpm": "conv_in.weight"}
MARKER = Path("/tmp/aigcbench-test-weights-pickle-ran")


class RunsCode:
    """Pickles as a call that would leave a marker file: a weights_only load must refuse it, never run it."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


class Custom:
    """A plain custom class, which weights_only refuses too."""


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One good folder per workload, each as its users save it (safetensors for the diffusers models)."""
    from aigcbench.workloads.vae import TINY_VAE_CONFIG
    from aigcbench.workloads.vae_model import build_random_vae

    root = tmp_path_factory.mktemp("good-weights")
    folders = {name: root / name for name in WORKLOADS}
    dcgan = registry.build("dcgan", "tiny", seed=4)
    folders["dcgan"].mkdir()
    save_file(dcgan.generator.state_dict(), folders["dcgan"] / SAFETENSORS["dcgan"])
    (folders["dcgan"] / "config.json").write_text(json.dumps({"nz": 16, "ngf": 8, "image_size": 32}))
    build_random_vae(TINY_VAE_CONFIG, seed=2).save_pretrained(folders["vae"] / "vae")
    registry.build("ddpm", "tiny", seed=3, steps=2).denoiser.unet.save_pretrained(folders["ddpm"])
    return folders


def model_dir(folder: Path, workload: str) -> Path:
    return folder / MODEL_DIR[workload]


def rewrite(folder: Path, workload: str, change: Callable[[dict], object], as_torch: bool = False) -> None:
    """Apply `change` to the checkpoint's state_dict and save it back (as a torch file if `as_torch`)."""
    path = model_dir(folder, workload) / SAFETENSORS[workload]
    state = load_file(path)
    change(state)
    if as_torch:
        path.unlink()
        torch.save(state, model_dir(folder, workload) / TORCH_FILE[workload])
    else:
        save_file(state, path)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _missing_folder(folder: Path, workload: str) -> tuple[Path, str]:
    return folder.parent / "nowhere", "does not exist"


def _missing_folder_named_with_a_newline(folder: Path, workload: str) -> tuple[Path, str]:
    # Quoted in the message, so the one-line contract holds whatever the name.
    return folder.parent / "no\nwhere", "'" + str(folder.parent / "no\\nwhere") + "' does not exist"


def _file_not_folder(folder: Path, workload: str) -> tuple[Path, str]:
    path = model_dir(folder, workload) / SAFETENSORS[workload]
    return path, "is not a folder"


def _empty_folder(folder: Path, workload: str) -> tuple[Path, str]:
    empty = folder.parent / "empty"
    empty.mkdir()
    return empty, "has no"


def _corrupt_safetensors(folder: Path, workload: str) -> tuple[Path, str]:
    (model_dir(folder, workload) / SAFETENSORS[workload]).write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}  ")
    return folder, "is not a readable safetensors file"


def _truncated_safetensors(folder: Path, workload: str) -> tuple[Path, str]:
    truncate(model_dir(folder, workload) / SAFETENSORS[workload])
    return folder, "is not a readable safetensors file"


def _truncated_torch(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: None, as_torch=True)
    truncate(model_dir(folder, workload) / TORCH_FILE[workload])
    return folder, "is not a readable torch file"


def _pickle_runs_code(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: s.__setitem__("payload", RunsCode()), as_torch=True)
    return folder, "needs more than tensors"


def _pickle_custom_class(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: s.__setitem__(NEEDED[workload], Custom()), as_torch=True)
    return folder, "Custom"


def _not_a_state_dict(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: None, as_torch=True)
    torch.save([torch.zeros(2)], model_dir(folder, workload) / TORCH_FILE[workload])
    return folder, "not a state_dict"


def _missing_tensor(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: s.pop(NEEDED[workload]))
    return folder, f"lacks tensor {NEEDED[workload]!r}"


def _missing_tensor_torch(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: s.pop(NEEDED[workload]), as_torch=True)
    return folder, f"lacks tensor {NEEDED[workload]!r}"


def _extra_tensor(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: s.__setitem__("bogus.weight", torch.zeros(2)))
    return folder, "holds tensor 'bogus.weight'"


def _wrong_shape(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: s.__setitem__(NEEDED[workload], torch.zeros(1, 2, 3)))
    return folder, f"tensor {NEEDED[workload]!r} has shape [1, 2, 3]"


def _wrong_dtype(folder: Path, workload: str) -> tuple[Path, str]:
    rewrite(folder, workload, lambda s: s.__setitem__(NEEDED[workload], s[NEEDED[workload]].to(torch.int32)))
    return folder, f"tensor {NEEDED[workload]!r} is int32"


def _config_not_json(folder: Path, workload: str) -> tuple[Path, str]:
    (model_dir(folder, workload) / "config.json").write_text("{nz: 16")
    return folder, "config"


def _config_not_object(folder: Path, workload: str) -> tuple[Path, str]:
    (model_dir(folder, workload) / "config.json").write_text("[16, 8]")
    return folder, "JSON object"


def _config_bad_value(folder: Path, workload: str) -> tuple[Path, str]:
    path = model_dir(folder, workload) / "config.json"
    key = {"dcgan": "ngf", "vae": "norm_num_groups", "ddpm": "norm_num_groups"}[workload]
    path.write_text(json.dumps({**json.loads(path.read_text()), key: 0}))
    return folder, "config"


def _config_other_model(folder: Path, workload: str) -> tuple[Path, str]:
    # The architecture no longer matches the checkpoint: the first tensor that differs is named.
    path = model_dir(folder, workload) / "config.json"
    key = {"dcgan": "ngf", "vae": "block_out_channels", "ddpm": "block_out_channels"}[workload]
    value = 16 if workload == "dcgan" else [48, 64]
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    return folder, "needs ["


CASES = {name.removeprefix("_"): case for name, case in globals().items()
         if name.startswith("_") and callable(case) and case.__module__ == __name__ and name[1].isalpha()}


def digest(*paths: Path) -> str:
    """One sha256 over every file under `paths` (names and bytes); a missing path counts as absent."""
    hasher = hashlib.sha256()
    for root in paths:
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for file in files:
            if file.is_file():
                hasher.update(str(file).encode() + file.read_bytes())
            elif not file.exists():
                hasher.update(b"absent:" + str(file).encode())
    return hasher.hexdigest()


def copy_good(good: dict[str, Path], workload: str, tmp_path: Path) -> Path:
    folder = tmp_path / "weights" / "model"
    shutil.copytree(good[workload], folder)
    return folder


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("workload", WORKLOADS)
def test_bad_weights_exit_2_with_one_line_and_nothing_stored(
    workload: str, case: str, good: dict[str, Path], tmp_path: Path
) -> None:
    MARKER.unlink(missing_ok=True)
    weights, expected = CASES[case](copy_good(good, workload, tmp_path), workload)
    store = tmp_path / "results.db"
    Store.open(str(store)).close()
    out = tmp_path / "record.json"
    before = digest(store, out, tmp_path / "weights")
    # In this process: what is refused and what is left untouched do not depend on where the check runs,
    # and a worker per case would cost seconds; the worker's own check is the two tests below.
    result = runner.invoke(app, ["run", "-w", workload, "-b", "pytorch", *FAST, "--in-process",
                                 "--weights", str(weights), "--store", str(store), "--json", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert digest(store, out, tmp_path / "weights") == before
    assert not MARKER.exists(), "a weights file ran code while it was checked"


@pytest.mark.parametrize(("workload", "case"), [("ddpm", "missing_tensor"), ("vae", "pickle_runs_code"),
                                                ("dcgan", "extra_tensor"), ("ddpm", "config_other_model")])
def test_real_entry_point_refuses_bad_weights_before_creating_the_store(
    workload: str, case: str, good: dict[str, Path], tmp_path: Path
) -> None:
    # The entry point as a user runs it: diffusers' own stderr warnings must not add lines either.
    MARKER.unlink(missing_ok=True)
    weights, expected = CASES[case](copy_good(good, workload, tmp_path), workload)
    store = tmp_path / "results.db"
    done = cli("run", "-w", workload, "-b", "pytorch", *FAST, "--weights", str(weights), "--store", str(store))
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and expected in done.stderr and "Traceback" not in done.stderr
    assert str(weights) in done.stderr
    assert not store.exists() and not MARKER.exists()


@pytest.mark.parametrize("workload", WORKLOADS)
def test_good_weights_pass_and_measure(workload: str, good: dict[str, Path], tmp_path: Path) -> None:
    store, out = tmp_path / "results.db", tmp_path / "record.json"
    result = runner.invoke(app, ["run", "-w", workload, "-b", "pytorch", *FAST, "--steps", "2",
                                 "--weights", str(good[workload]), "--store", str(store), "--json", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())
    assert record["status"] == "ok" and record["config"]["weights"] == str(good[workload])
    assert len(record["workload"]["config"]["weights_sha256"]) == 64
    with Store.open(str(store)) as opened:
        assert len(opened.records()) == 1


# --- the checks themselves, without the CLI -------------------------------------------------


def test_the_code_running_pickle_would_run_code(tmp_path: Path) -> None:
    # The control for the pickle case: a plain load runs it, so the refusal above means something.
    MARKER.unlink(missing_ok=True)
    torch.save({"payload": RunsCode()}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert MARKER.exists()
    MARKER.unlink()


@pytest.mark.parametrize("workload", WORKLOADS)
def test_the_worker_load_path_refuses_a_missing_tensor_too(
    workload: str, good: dict[str, Path], tmp_path: Path
) -> None:
    # Defence in depth: the workload's own constructor (what the worker calls) runs the same check.
    folder = copy_good(good, workload, tmp_path)
    rewrite(folder, workload, lambda s: s.pop(NEEDED[workload]))
    with pytest.raises(CheckpointError) as error:
        registry.get(workload)("tiny", weights=folder)
    assert error.value.tensor == NEEDED[workload] and "\n" not in str(error.value)


@pytest.mark.parametrize("workload", WORKLOADS)
def test_half_precision_checkpoints_load_cast_to_fp32(workload: str, good: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_good(good, workload, tmp_path)
    rewrite(folder, workload, lambda s: s.update({k: v.half() for k, v in s.items() if v.is_floating_point()}))
    registry.check(workload, "tiny", weights=folder)
    loaded = registry.build(workload, "tiny", weights=folder)
    (module,) = loaded.components().values()
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_a_vae_checkpoint_without_its_encoder_is_enough(good: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_good(good, "vae", tmp_path)
    rewrite(folder, "vae", lambda s: [s.pop(k) for k in list(s) if k.startswith(("encoder.", "quant_conv."))])
    registry.build("vae", "tiny", weights=folder)
    # Training encodes as well: the same folder is refused for it, before anything is built, naming a tensor.
    with pytest.raises(UserError, match="encoder"):
        registry.check("vae", "tiny", weights=folder, mode="train")
    registry.build("vae", "tiny", weights=good["vae"], mode="train")


def test_a_sharded_checkpoint_is_checked_across_its_shards(good: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "sharded"
    registry.build("ddpm", "tiny", seed=3).denoiser.unet.save_pretrained(folder, max_shard_size="200KB")
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    registry.check("ddpm", "tiny", weights=folder)
    registry.build("ddpm", "tiny", steps=2, weights=folder)
    shard = sorted(folder.glob("*-of-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(UserError, match=shard.name):
        registry.check("ddpm", "tiny", weights=folder)


def test_legacy_attention_names_are_mapped_before_they_are_checked(good: dict[str, Path], tmp_path: Path) -> None:
    # The converted google/ddpm-* checkpoints name attention projections query/key/value/proj_attn.
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    folder = copy_good(good, "ddpm", tmp_path)

    def legacy(state: dict) -> None:
        for name in [k for k in state if ".attentions." in k]:
            for new, before in old.items():
                if f".{new}." in name:
                    state[name.replace(f".{new}.", f".{before}.")] = state.pop(name)

    rewrite(folder, "ddpm", legacy)
    assert any(".query." in k for k in load_file(folder / SAFETENSORS["ddpm"]))
    registry.check("ddpm", "tiny", weights=folder)
    loaded = registry.build("ddpm", "tiny", steps=2, weights=folder)
    source = registry.build("ddpm", "tiny", seed=3, steps=2)
    assert all(torch.equal(v, loaded.denoiser.state_dict()[k]) for k, v in source.denoiser.state_dict().items())


def test_a_folder_changed_after_a_passing_check_is_checked_again(good: dict[str, Path], tmp_path: Path) -> None:
    folder = copy_good(good, "dcgan", tmp_path)
    registry.check("dcgan", "tiny", weights=folder)
    rewrite(folder, "dcgan", lambda s: s.pop(NEEDED["dcgan"]))
    with pytest.raises(CheckpointError, match=NEEDED["dcgan"]):
        registry.check("dcgan", "tiny", weights=folder)
