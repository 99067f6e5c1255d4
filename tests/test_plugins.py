"""Third-party backends that fail are unavailable with their error as the reason, never a traceback.

The plugins here are real: a distribution folder with `*.dist-info/entry_points.txt`
put on PYTHONPATH, found by the real `importlib.metadata` in a real `aigcbench`
subprocess. Each broken plugin breaks in its own way; one listing shows them all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aigcbench.backends import registry as backends
from aigcbench.bench import plugins
from aigcbench.bench.cli import app
from aigcbench.bench.errors import BackendUnavailable

from .test_cli import cli

GOOD_CLASS = """
from aigcbench.backends.base import Backend

class Plugin(Backend):
    name = "{name}"
    description = "a test plugin"
    precisions = ("fp32",)

    def available(self):
        return None

    def check_device(self, device, precision):
        pass

    def prepare(self, *args, **kwargs):
        raise RuntimeError("never prepared in these tests")
"""

# name → (module source, attribute, what the reason must say)
BROKEN: dict[str, tuple[str, str, str]] = {
    "import-error": ('raise ImportError("needs libfoo 3")\n', "Plugin", "ImportError: needs libfoo 3"),
    "runtime-error": ('raise RuntimeError("no licence server")\n', "Plugin", "RuntimeError: no licence server"),
    "syntax-error": ("def broken(:\n    pass\n", "Plugin", "SyntaxError"),
    "exits-at-import": ("import sys\nsys.exit(4)\n", "Plugin", "SystemExit: 4"),
    "missing-class": (GOOD_CLASS, "NoSuchClass", "AttributeError"),
    "init-raises": (GOOD_CLASS + "    def __init__(self):\n        raise ValueError('bad init')\n", "Plugin",
                    "ValueError: bad init"),
    "not-a-backend": ("class Plugin:\n    name = 'not-a-backend'\n", "Plugin", "lacks description, precisions"),
    "bad-shape": (GOOD_CLASS.replace('precisions = ("fp32",)', "precisions = None"), "Plugin", "precisions must be"),
    "available-raises": (
        GOOD_CLASS.replace("return None", 'raise OSError("driver\\nmismatch")', 1), "Plugin",
        "available() raised OSError: driver mismatch",
    ),
    "check-raises": (
        GOOD_CLASS.replace("pass", 'raise KeyError("device table")', 1), "Plugin", "check() raised KeyError",
    ),
}
VERSION_RAISES = "version-raises"  # available, but version() raises: listed with no version
FAILS_ONLY_WHEN_CHECKED = {"check-raises"}  # the listing never calls check(): only `run` sees it fail


def _module(name: str) -> str:
    return "plugin_" + name.replace("-", "_")


def make_distribution(root: Path) -> Path:
    """A folder holding one distribution whose entry points are every plugin above."""
    root.mkdir(parents=True, exist_ok=True)
    sources = {name: (source, attribute) for name, (source, attribute, _) in BROKEN.items()}
    version_raises = GOOD_CLASS + "    def version(self):\n        raise RuntimeError('no version')\n"
    sources[VERSION_RAISES] = (version_raises, "Plugin")
    lines = ["[aigcbench.backends]"]
    for name, (source, attribute) in sources.items():
        (root / f"{_module(name)}.py").write_text(source.replace("{name}", name), encoding="utf-8")
        lines.append(f"{name} = {_module(name)}:{attribute}")
    info = root / "broken_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugins\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_distribution(tmp_path_factory.mktemp("plugins") / "site")


def env_for(site: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


@pytest.fixture(scope="module")
def listing(site: Path) -> dict[str, dict]:
    result = cli("list", "backends", "--json", env=env_for(site))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


@pytest.mark.parametrize("name", sorted(set(BROKEN) - FAILS_ONLY_WHEN_CHECKED))
def test_a_broken_plugin_is_listed_unavailable_with_its_error(listing: dict[str, dict], name: str) -> None:
    row = listing[name]
    assert row["available"] is False
    assert BROKEN[name][2] in row["reason"] and "\n" not in row["reason"]


def test_the_listing_still_shows_every_other_backend(listing: dict[str, dict]) -> None:
    assert set(backends.BUILTIN) <= set(listing)
    assert listing["pytorch"]["available"] is True
    assert listing[VERSION_RAISES]["available"] is True and listing[VERSION_RAISES]["version"] is None


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", env_for(site)["PYTHONPATH"])  # the cell's worker checks the plugin too
    plugins.clear_cache()
    yield
    plugins.clear_cache()  # the plugins leave sys.path with the monkeypatch: forget them too


RUN = ["run", "--workload", "dcgan", "--size", "tiny", "--duration", "0", "--warmup", "0", "--warmup-duration", "0"]


def assert_unavailable(code: int, stderr: str, name: str, store: Path) -> None:
    lines = stderr.strip().splitlines()
    assert code == 3, stderr
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert BROKEN[name][2] in lines[0] and name in lines[0]
    assert not store.exists()


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_run_with_a_broken_plugin_exits_3_with_the_reason(installed, tmp_path: Path, name: str) -> None:
    # The CLI in process (the plugins on sys.path); what needs the runtime is checked in the worker it starts.
    store = tmp_path / "x.db"
    result = CliRunner().invoke(app, [*RUN, "--backend", name, "--store", str(store)], catch_exceptions=False)
    assert_unavailable(result.exit_code, result.stderr, name, store)


@pytest.mark.parametrize("name", ["syntax-error", "available-raises"])
def test_the_real_entry_point_exits_3_too(site: Path, tmp_path: Path, name: str) -> None:
    store = tmp_path / "x.db"
    result = cli(*RUN, "--backend", name, "--store", str(store), env=env_for(site))
    assert_unavailable(result.returncode, result.stderr, name, store)


def test_a_sweep_skips_the_cells_of_a_broken_plugin(site: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "s.toml"
    sweep.write_text('[matrix]\nworkload = ["dcgan"]\nsize = ["tiny"]\nbackend = ["runtime-error", "null"]\n')
    store = tmp_path / "x.db"
    result = cli("sweep", str(sweep), "--dry-run", "--store", str(store), env=env_for(site))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "skip (backend plugin 'runtime-error'" in " ".join(result.stdout.split())
    assert not store.exists()


# --- In process: the registry and the entry-point cache -------------------------------------------


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_get_raises_backend_unavailable_or_guards_the_checks(installed, name: str) -> None:
    with pytest.raises(BackendUnavailable) as caught:
        backend = backends.get(name)
        reason = backend.available()
        if reason is not None:
            raise BackendUnavailable(reason)
        backend.check("cpu", "fp32")
    assert BROKEN[name][2] in str(caught.value)


def test_entry_points_are_read_once_until_the_cache_is_cleared(installed, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = plugins.metadata.entry_points

    def counting(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(plugins.metadata, "entry_points", counting)
    plugins.clear_cache()
    for _ in range(50):
        assert "import-error" in backends.names()
    assert len(calls) == 1
    plugins.clear_cache()
    backends.names()
    assert len(calls) == 2


def test_callers_cannot_change_the_cached_specs(installed) -> None:
    specs = plugins.entry_point_specs(backends.ENTRY_POINT_GROUP)
    specs.clear()
    assert "import-error" in plugins.entry_point_specs(backends.ENTRY_POINT_GROUP)
