"""The environment fingerprint: what machine and software produced a record.

Every record carries `fingerprint()` so that numbers are only ever compared
with numbers from the same class of hardware (`hardware_key`) and so that a
changed library version explains a changed number (DESIGN.md, "Everything
that changes a number is recorded").

Nothing here imports a heavy or optional library: package versions come from
installed metadata (`importlib.metadata`), never from importing the package,
and NVML is imported only inside `_nvml_gpus`, so `aigcbench --help` stays fast.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from .base import unavailable

# CPU flags that change which kernels a runtime can use (vector width, bf16/int8
# dot products, AMX tiles); the other ~100 flags only add noise to a record.
PERFORMANCE_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "fma",
    "neon",
    "asimd",
)

# Key in `packages` -> distribution names that provide it, first match wins.
# GPU and vendor builds ship under other distribution names (onnxruntime-gpu,
# tensorrt-cu12) but are the same library to the code that imports it.
PACKAGE_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "diffusers": ("diffusers",),
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml"),
    "openvino": ("openvino",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    "nvidia-ml-py": ("nvidia-ml-py",),
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "onnx2tf": ("onnx2tf",),
    "ai-edge-litert": ("ai-edge-litert",),
    "ray": ("ray",),
    "aigcbench": ("aigcbench",),
}

COMMAND_TIMEOUT_S = 5.0


def fingerprint() -> dict[str, Any]:
    """Describe this machine and its software as a JSON-serializable dict.

    Keys: `cpu` {model, vendor, arch, flags, physical_cores, logical_cores,
    affinity_cores}, `memory_bytes`, `os` {system, release, distro}, `python`,
    `executable` (the interpreter, as started), `packages` {name: version or None}, `gpus` [{index, name, memory_bytes,
    driver_version, compute_capability, uuid}], `gpu_source` (`"nvml"` or
    `"unavailable: <reason>"`) and `hardware_key`.

    Computed once per process, since every record asks for it and the answer
    cannot change while the process lives; each call returns a fresh copy so a
    caller that edits its record cannot corrupt the cached original.
    """
    return copy.deepcopy(_fingerprint_once())


@functools.lru_cache(maxsize=1)
def _fingerprint_once() -> dict[str, Any]:
    cpu = cpu_info()
    gpus, gpu_source = _nvml_gpus()
    cores = cpu["affinity_cores"] or cpu["logical_cores"] or 0
    return {
        "cpu": cpu,
        "memory_bytes": _memory_bytes(),
        "os": os_info(),
        "python": platform.python_version(),
        # The interpreter the cell ran in, as started (a virtual environment's bin/python, not its target):
        # cells of one sweep may run in different environments (`bench/interpreters.py`).
        "executable": sys.executable,
        "packages": package_versions(),
        "gpus": gpus,
        "gpu_source": gpu_source,
        "hardware_key": hardware_key(cpu["model"], cores, [g["name"] for g in gpus]),
    }


# --------------------------------------------------------------------- hardware key

# Marketing and clock noise in CPU model strings: it differs between identical
# parts (a stepping's nominal clock, "(R)") and would split one hardware class.
_CPU_NOISE = (
    r"\((r|tm|c)\)",  # Intel(R) Xeon(R), Core(TM)
    r"@\s*[\d.]+\s*[gm]hz",  # "@ 2.10GHz"
    r"\b[\d.]+\s*[gm]hz\b",  # "2.40GHz" without the @
    r"\b(\d+|[a-z]+)-core\b",  # AMD's "96-Core", "Eight-Core": the SKU already says it
    r"\bprocessor\b",
    r"\bcpu\b",
)


def slug(text: str) -> str:
    """Lowercase `text`, turn every run of non-alphanumerics into one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def cpu_slug(cpu_model: str) -> str:
    """The CPU part of a hardware key: the model name without clock or trademark noise.

    >>> cpu_slug("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz")
    'intel-xeon-platinum-8480'
    """
    text = cpu_model.lower()
    for pattern in _CPU_NOISE:
        text = re.sub(pattern, " ", text)
    return slug(text) or "unknown-cpu"


def hardware_key(cpu_model: str, cores: int, gpu_names: Iterable[str]) -> str:
    """A stable, readable slug naming the hardware class a result belongs to.

    `{cpu slug}-{cores}c` then `+{count}x-{gpu slug}` per distinct GPU model,
    sorted by slug so the key does not depend on enumeration order. Memory size
    and hostnames are left out on purpose: containers on one machine class see
    different memory limits, and results should pool across identical hosts.

    >>> hardware_key("AMD EPYC 9B14 96-Core Processor", 2, [])
    'amd-epyc-9b14-2c'
    >>> hardware_key("Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", 16, ["NVIDIA H200"])
    'intel-xeon-platinum-8480-16c+1x-nvidia-h200'
    """
    key = f"{cpu_slug(cpu_model)}-{cores}c"
    counts = Counter(slug(name) or "unknown-gpu" for name in gpu_names)
    for gpu in sorted(counts):
        key += f"+{counts[gpu]}x-{gpu}"
    return key


# --------------------------------------------------------------------------- CPU

def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first value of each `key : value` line of /proc/cpuinfo (the first CPU's)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_info(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Model, vendor, architecture, performance flags and usable core counts."""
    try:
        fields = parse_cpuinfo(cpuinfo_path.read_text(errors="replace"))
    except OSError:  # not Linux: fall back to what `platform` knows
        fields = {}
    # x86 lists flags under "flags", ARM under "Features".
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    return {
        "model": fields.get("model name") or _platform_cpu_model(),
        "vendor": fields.get("vendor_id") or None,
        "arch": platform.machine(),
        "flags": [flag for flag in PERFORMANCE_FLAGS if flag in present],
        "physical_cores": _physical_cores(),
        "logical_cores": os.cpu_count(),
        "affinity_cores": _affinity_cores(),
    }


def _platform_cpu_model() -> str:
    if platform.system() == "Darwin":
        # macOS keeps the marketing name in sysctl; platform.processor() says only "arm".
        name = _run(["sysctl", "-n", "machdep.cpu.brand_string"], cwd=".")
        if name:
            return name
    return platform.processor() or platform.machine() or "unknown"


def _physical_cores() -> int | None:
    import psutil

    return psutil.cpu_count(logical=False)


def _affinity_cores() -> int | None:
    # The cores this process may run on: in a container or under taskset this is
    # what a benchmark actually gets, not the host's os.cpu_count().
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return None


def _memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


# ------------------------------------------------------------------- OS, packages

def os_info(os_release_path: Path = Path("/etc/os-release")) -> dict[str, Any]:
    """Kernel name and release, plus the distribution's PRETTY_NAME when there is one."""
    distro = None
    try:
        for line in os_release_path.read_text(errors="replace").splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "PRETTY_NAME":
                distro = value.strip().strip("\"'")
                break
    except OSError:
        pass
    return {"system": platform.system(), "release": platform.release(), "distro": distro}


def package_versions() -> dict[str, str | None]:
    """Installed versions of the libraries that change numbers, None when absent."""
    return {key: _distribution_version(names) for key, names in PACKAGE_DISTRIBUTIONS.items()}


def _distribution_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


# ---------------------------------------------------------------------------- GPU

def _nvml_gpus() -> tuple[list[dict[str, Any]], str]:
    """Every GPU NVML sees, and the source string (`"nvml"` or why not).

    NVML lists the GPUs of the machine (or container), not the subset that
    CUDA_VISIBLE_DEVICES exposes to this process.
    """
    try:
        import pynvml
    except ImportError:
        return [], unavailable("no NVML library (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as err:
        return [], unavailable(f"NVML init failed: {err}")
    try:
        driver = _text(pynvml.nvmlSystemGetDriverVersion())
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                {
                    "index": index,
                    "name": _text(pynvml.nvmlDeviceGetName(handle)),
                    "memory_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    "driver_version": driver,
                    "compute_capability": f"{major}.{minor}",
                    "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                }
            )
        return gpus, "nvml"
    except pynvml.NVMLError as err:
        return [], unavailable(f"NVML query failed: {err}")
    finally:
        pynvml.nvmlShutdown()


def _text(value: str | bytes) -> str:
    # nvidia-ml-py before 11.5 returned bytes, later versions str.
    return value.decode() if isinstance(value, bytes) else value


# ---------------------------------------------------------------------------- git

def git_commit(path: str | os.PathLike[str] = ".") -> str | None:
    """The HEAD commit of the repository containing `path`, "-dirty" if tracked files changed.

    None when `path` is not in a git repository, git is not installed, or git
    does not answer within a few seconds (a network filesystem must not stall a
    benchmark). Untracked files do not make a tree dirty: they do not change
    what the committed code measures.
    """
    commit = _run(["git", "rev-parse", "--verify", "HEAD"], cwd=path)
    if commit is None or not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit):
        return None
    changes = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path)
    return f"{commit}-dirty" if changes else commit


def _run(argv: list[str], cwd: str | os.PathLike[str]) -> str | None:
    """stdout of a short command, stripped; None when it fails, is missing or hangs."""
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
