"""The wheel must contain every subpackage: package-dir mappings fail silently otherwise."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Top-level folders that are subpackages of the aigcbench namespace.
SUBPACKAGE_ROOTS = {"bench": "aigcbench/bench", "workloads": "aigcbench/workloads",
                    "backends": "aigcbench/backends", "reports": "aigcbench/reports"}


def _source_packages() -> set[str]:
    found = set()
    for folder, target in SUBPACKAGE_ROOTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            found.add(str(Path(target) / relative).rstrip("/."))
    return {p.removesuffix("/.") for p in found}


def test_wheel_contains_every_subpackage_and_module(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    wheel = next(tmp_path.glob("aigcbench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = _source_packages()
    assert "aigcbench/bench/cli" in packages  # the walk itself works
    missing = sorted(p for p in packages if f"{p}/__init__.py" not in names)
    assert not missing, f"subpackages missing from the wheel (add them to [tool.setuptools] packages): {missing}"
    modules = {
        str(Path(SUBPACKAGE_ROOTS[py.relative_to(ROOT).parts[0]]) / Path(*py.relative_to(ROOT).parts[1:]))
        for folder in SUBPACKAGE_ROOTS for py in (ROOT / folder).rglob("*.py")
    }
    assert not sorted(modules - names), "modules missing from the wheel"
    templates = {f"aigcbench/reports/templates/{t.name}" for t in (ROOT / "reports" / "templates").glob("*.j2")}
    assert templates and not sorted(templates - names), "report templates missing from the wheel (package-data)"
    data = {f"aigcbench/reports/plan/data/{f}" for f in ("hardware.csv", "priors.toml", "README.md")}
    assert not sorted(data - names), "the hardware catalog or the priors are missing from the wheel (package-data)"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "aigcbench = aigcbench.bench.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
