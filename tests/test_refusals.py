"""Bad input is refused before anything is measured: one line, exit 2 (or 3), no traceback, nothing changed.

One parametrized test per class of bad input (issue 10): numbers, output
paths, devices. Every case runs the real `run` command against a store that
already holds a record, and checks the store and the output target are
byte-identical afterwards — a refusal must never cost a measurement, store a
`failed` record (which would then block the cell on resume) or leave half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.backends import registry
from aigcbench.bench import limits
from aigcbench.bench.cli import app
from aigcbench.bench.store import Store

from .test_cli import AIGCBENCH, cli

runner = CliRunner()
CELL = ["run", "--workload", "dcgan", "--size", "tiny", "--backend", "null", "--duration", "0", "--min-iterations", "2",
        "--warmup", "0", "--warmup-duration", "0"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store that already holds one record: refusals must leave it byte-identical."""
    path = tmp_path_factory.mktemp("refusals") / "results.db"
    result = runner.invoke(app, [*CELL, "--store", str(path)])
    assert result.exit_code == 0, result.output
    return path


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def refused(args: list[str], store: Path, code: int = 2, watched: Path | None = None) -> str:
    """Run `run ... args`; assert the refusal contract; return the one stderr line."""
    before, target = digest(store), digest(watched) if watched is not None else None
    result = runner.invoke(app, [*CELL, *args, "--store", str(store)])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert digest(store) == before, "the store changed"
    if watched is not None:
        assert digest(watched) == target, "the output target changed"
    return lines[0]


NUMBERS = [
    (["--duration", "inf"], "--duration must be finite"),
    (["--duration", "nan"], "--duration must be finite"),
    (["--duration", "-1"], "--duration must be from 0 to 604800 s"),
    (["--duration", "1e9"], "--duration must be from 0 to 604800 s"),
    (["--max-duration", "inf"], "--max-duration must be finite"),
    (["--max-duration", "0"], "--max-duration must be > 0"),
    (["--warmup-duration", "inf"], "--warmup-duration must be finite"),
    (["--warmup-duration", "-0.5"], "--warmup-duration must be from 0"),
    (["--warmup", "-1"], "--warmup must be from 0 to 10000000"),
    (["--warmup", "100000000000"], "--warmup must be from 0 to 10000000"),
    (["--min-iterations", "0"], "--min-iterations must be from 1"),
    (["--min-iterations", "1000000000000"], "--min-iterations must be from 1 to 100000000"),
    (["--max-iterations", "0"], "--max-iterations must be from 1"),
    (["--target-rel-iqr", "nan"], "--target-rel-iqr must be finite"),
    (["--target-rel-iqr", "0"], "--target-rel-iqr must be > 0"),
    (["--target-rel-iqr", "1"], "--target-rel-iqr must be > 0 and < 1"),
    (["--seed", "-1"], "--seed must be from 0 to 4294967295"),
    (["--seed", str(2**32)], "--seed must be from 0 to 4294967295"),
    (["--seed", "99999999999999999999"], "--seed must be from 0 to 4294967295"),
    (["--batch-size", "0"], "--batch-size must be from 1 to 65536"),
    (["--batch-size", "-3"], "--batch-size must be from 1 to 65536"),
    (["--batch-size", "100000000000"], "--batch-size must be from 1 to 65536"),
    (["--steps", "0"], "--steps must be from 1 to 10000"),
    (["--steps", "100000000"], "--steps must be from 1 to 10000"),
    (["--workload", "ddpm", "--steps", "1001"], "--steps must be from 1 to 1000 for ddpm"),
    (["--workload", "vae", "--size", "large", "--scenario", "throughput", "--batch-size", "4096"],
     "--batch-size 4096: vae large at fp32 needs at least"),
    (["--timeout", "inf"], "--timeout must be finite"),
    (["--timeout", "nan"], "--timeout must be finite"),
    (["--timeout", "0"], "--timeout must be > 0"),
    (["--timeout", "-5"], "--timeout must be > 0"),
    (["--scenario", "server", "--rate", "0"], "--rate must be a rate > 0"),
    (["--scenario", "server", "--rate", "-5"], "--rate"),
    (["--scenario", "server", "--rate", "inf"], "--rate 'inf'"),
    (["--scenario", "server", "--rate", "nan"], "--rate 'nan'"),
    (["--scenario", "server", "--rate", "1e12"], "--rate must be > 0 and ≤ 1000000000 queries/s"),
    (["--scenario", "server", "--rate", "10", "--max-batch", "0"], "--max-batch must be from 1 to 65536"),
    (["--scenario", "server", "--rate", "10", "--max-batch", "10000000"], "--max-batch must be from 1 to 65536"),
    (["--scenario", "server", "--rate", "10", "--max-wait", "inf"], "--max-wait 'inf'"),
    (["--scenario", "server", "--rate", "10", "--max-wait", "2h"], "--max-wait must be from 0 to 3600 s"),
    (["--scenario", "server", "--rate", "10", "--slo-p99", "inf"], "--slo-p99 'inf'"),
    (["--scenario", "server", "--rate", "10", "--slo-p99", "0"], "--slo-p99 must be > 0"),
    (["--scenario", "server", "--rate", "10", "--slo-p99", "1e9"], "--slo-p99 must be > 0 and ≤ 86400 s"),
]


@pytest.mark.parametrize(("args", "expected"), NUMBERS, ids=[" ".join(a) for a, _ in NUMBERS])
def test_numbers_out_of_range_or_not_finite_are_refused(args: list[str], expected: str, store: Path) -> None:
    assert expected in refused(args, store)


@pytest.mark.parametrize("key", ["batch_size", "steps", "seed"])
def test_upper_bounds_are_in_the_help(key: str) -> None:
    help_text = " ".join(runner.invoke(app, ["run", "--help"]).output.split())
    assert limits.range_help(key) in help_text


def _outputs(tmp: Path) -> list[tuple[str, Path, str]]:
    (tmp / "folder").mkdir(exist_ok=True)
    fifo = tmp / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    readonly = tmp / "read-only.json"
    if not readonly.exists():
        readonly.write_text("{}\n")
        readonly.chmod(0o444)
    cases = [
        ("a directory", tmp / "folder", "is a directory"),
        ("the current folder", Path(""), "is a directory"),
        ("a missing parent", tmp / "missing" / "r.json", "does not exist"),
        ("a folder nobody may write (procfs)", Path("/proc/r.json"), "is not writable"),
        ("a device", Path("/dev/full"), "is not a regular file"),
        ("a FIFO", fifo, "is not a regular file"),
        ("a newline in the name", tmp / "missing\nfolder" / "r.json", "'"),
    ]
    if os.geteuid() != 0:  # root writes whatever the mode bits say
        cases.append(("a read-only file", readonly, "is read-only"))
    return cases


@pytest.mark.parametrize("case", range(8))
def test_unwritable_outputs_are_refused_before_measuring(case: int, store: Path, tmp_path: Path) -> None:
    cases = _outputs(tmp_path)
    if case >= len(cases):
        pytest.skip("the read-only case needs a user that is not root")
    _, path, expected = cases[case]
    watched = path if path.is_file() else None
    line = refused(["--json", str(path)], store, watched=watched)
    assert expected in line and "\n" not in line
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode), "/dev/full was replaced by a regular file"


def test_an_output_that_fails_mid_write_leaves_the_old_file_and_no_temporary(store: Path, tmp_path: Path) -> None:
    """A real failed write (RLIMIT_FSIZE: the kernel refuses to grow a file) after every check passed."""
    output = tmp_path / "export.jsonl"
    output.write_text("the previous export\n")

    def small_files() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512))

    before = digest(store)
    done = subprocess.run([*AIGCBENCH, "export", "--store", str(store), "-o", str(output)], preexec_fn=small_files,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"aigcbench: error: -o {str(output)!r}: cannot write: File too large"]
    assert output.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.jsonl"]
    assert digest(store) == before


def test_outputs_keep_the_umask_and_write_through_symlinks(store: Path, tmp_path: Path) -> None:
    target, link = tmp_path / "target.json", tmp_path / "link.json"
    link.symlink_to(target)
    old = os.umask(0o027)
    try:
        result = runner.invoke(app, [*CELL, "--no-store", "--json", str(link)])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and target.is_file()
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    target.chmod(0o604)
    assert runner.invoke(app, [*CELL, "--no-store", "--json", str(target)]).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o604  # a replaced file keeps its mode


DEVICES = [
    ("null", "tpu", 2, "is not a torch device"),
    ("null", "cuda:99", 3, "device cuda:99"),
    ("null", "mps", 3, "MPS is not available"),
    ("null", "cpu:1", 2, "is not a torch device"),
    ("pytorch", "cuda:99", 3, "device cuda:99"),
    ("pytorch", "mps", 3, "MPS is not available"),
    ("pytorch", "gpu", 2, "is not a torch device"),
    ("pytorch", "CUDA", 2, "expected a device name"),
    ("pytorch", "cuda:-1", 2, "expected a device name"),
    ("onnxruntime", "mps", 2, "runs on cpu or cuda"),
    ("openvino", "cpu:1", 2, "numbers only GPUs"),
    ("openvino", "gpu:x", 2, "expected a device name"),
    ("openvino", "cuda", 2, "runs on cpu, gpu[:N], npu or auto"),
]


@pytest.mark.parametrize(("backend", "device", "code", "expected"), DEVICES,
                         ids=[f"{b}-{d}" for b, d, _, _ in DEVICES])
def test_devices_this_machine_lacks_or_no_backend_knows_are_refused(
        backend: str, device: str, code: int, expected: str, store: Path) -> None:
    if device.startswith("cuda:") and device[5:].isdigit():
        pytest.importorskip("torch")
        import torch
        if torch.cuda.is_available() and torch.cuda.device_count() > int(device[5:]):
            pytest.skip("this machine has that many GPUs")
    if not registry.describe(backend)["available"]:
        pytest.skip(f"{backend} is not installed here")
    line = refused(["--backend", backend, "--device", device], store, code=code)
    assert expected in line


# What the CLI checks before any worker starts (`check_config`), for every registered backend, in a fresh
# interpreter: a device name none of them knows, and which heavy library that check imported (none may).
NAME_DRIVER = """
import json, sys
from aigcbench.backends import registry
from aigcbench.bench.cell_check import check_config
from aigcbench.bench.config import RunConfig
from aigcbench.bench.errors import UserError
refused = {}
for name in registry.names():
    try:
        check_config(RunConfig.from_options({"workload": "dcgan", "backend": name, "size": "tiny", "device": "tpu"}))
    except UserError as err:
        refused[name] = err.key
heavy = ("torch", "numpy", "onnxruntime", "openvino", "tensorrt", "tensorflow")
print(json.dumps({"refused": refused, "heavy": sorted(m for m in heavy if m in sys.modules)}))
"""


def test_every_backend_refuses_a_device_name_from_its_text_alone_before_a_worker_starts() -> None:
    done = subprocess.run([sys.executable, "-c", NAME_DRIVER], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found == {"refused": {name: "device" for name in registry.names()}, "heavy": []}


def test_a_refusal_only_the_worker_can_make_stores_nothing(store: Path) -> None:
    """The worker refuses (here injected: a check that needs the built model); the parent refuses it alike."""
    before = digest(store)
    done = cli(*CELL, "--option", "fault=refuse", "--store", str(store))
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == ["aigcbench: error: null backend: input refused in the worker (injected)"]
    assert digest(store) == before


def test_a_sweep_cell_its_worker_refuses_is_skipped_unstored_and_the_sweep_exits_2(tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('[defaults]\nsize = "tiny"\nduration = 0\nmin_iterations = 2\nwarmup = 0\nwarmup_duration = 0\n'
                     '[matrix]\nworkload = ["dcgan"]\nbackend = ["null"]\n'
                     'options = [{ fault = "none" }, { fault = "refuse" }]\n')
    done = cli("sweep", str(sweep), "--store", str(tmp_path / "s.db"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refused: null backend: input refused in the worker" in " ".join(done.stdout.split())
    with Store.open(str(tmp_path / "s.db")) as opened:
        assert [r.config["options"] for r in opened.records()] == [{"fault": "none"}]


def test_an_empty_weights_path_is_refused_not_read_as_the_current_folder(store: Path) -> None:
    assert "--weights must name a folder, got ''" in refused(["--weights", ""], store)


def test_a_worker_refusal_leaves_no_store_where_there_was_none(tmp_path: Path) -> None:
    fresh = tmp_path / "new.db"
    done = cli(*CELL, "--option", "fault=refuse", "--store", str(fresh))
    assert done.returncode == 2, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []
