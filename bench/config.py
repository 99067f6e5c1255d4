"""The configuration of one measurement cell, validated once at the edge.

A `RunConfig` is frozen: once built, nothing changes it, and every value that
can change a number is in it (and therefore in the record). Validation names
the bad value in one line; checks that need the backend library or the device
(is there a GPU? does this CPU do fp16?) happen later, in the backend's `check`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from ..backends import registry as backend_registry
from ..backends.base import PRECISIONS
from ..workloads import registry as workload_registry
from ..workloads.base import SIZES
from ..workloads.params import DEFAULT_MODE, MODES, PARAMS
from . import limits, scenarios
from .errors import UserError
from .quantities import parse_duration, parse_rate
from .scenarios import ServerSettings
from .stopping import StopRule, WarmupRule

_DEVICE = re.compile(r"^[a-z][a-z0-9_]*(:\d+)?$")
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def parse_pairs(values: Iterable[str], flag: str) -> dict[str, str]:
    """Parse repeated `KEY=VALUE` options (`--label`, `--option`) into a dict."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _LABEL_KEY.match(key):
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE with KEY made of letters, digits, _ . -")
        pairs[key] = value
    return pairs


@dataclass(frozen=True)
class RunConfig:
    workload: str
    backend: str
    size: str = "base"
    device: str = "cpu"
    precision: str = "fp32"
    scenario: str = "latency"
    batch_size: int | None = None  # None: the scenario's default
    steps: int | None = None  # None: the workload's default (iterative workloads only)
    scheduler: str | None = None
    seed: int = 0
    weights: str | None = None
    stop: StopRule = field(default_factory=StopRule)
    warmup: WarmupRule = field(default_factory=WarmupRule)
    options: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    server: ServerSettings | None = None  # the server scenario's load; None for the closed loops
    mode: str = DEFAULT_MODE  # infer, or train: one optimizer step per call (workloads/params.py)
    params: Mapping[str, Any] = field(default_factory=dict)  # workload parameters given (guidance, new_tokens, ...)

    def __post_init__(self) -> None:
        # Freeze the mappings too: a frozen dataclass holding a dict is not frozen.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        if self.mode not in MODES:
            raise UserError(f"--mode {self.mode!r}: choose from {', '.join(MODES)}", key="mode")
        unknown = sorted(set(self.params) - set(PARAMS))
        if unknown:
            raise UserError(f"unknown workload parameter {unknown[0]!r}; known: {', '.join(PARAMS)}")
        workload_registry.get(self.workload)  # raises with the valid names
        if self.backend not in backend_registry.names():
            raise UserError(f"unknown backend {self.backend!r}; choose from: {', '.join(backend_registry.names())}")
        if self.size not in SIZES:
            raise UserError(f"--size {self.size!r}: choose from {', '.join(SIZES)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r}: choose from {', '.join(PRECISIONS)}")
        if self.scenario not in scenarios.SCENARIOS:
            raise UserError(f"--scenario {self.scenario!r}: choose from {', '.join(scenarios.SCENARIOS)}")
        if not _DEVICE.match(self.device):
            raise UserError(f"--device {self.device!r}: expected a device name such as cpu, cuda, cuda:1, mps")
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError(f"--batch-size must be ≥ 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise UserError(f"--steps must be ≥ 1, got {self.steps}")
        if self.seed < 0:
            raise UserError(f"--seed must be ≥ 0, got {self.seed}")
        self._check_server()

    def _check_server(self) -> None:
        if self.scenario != "server":
            if self.server is not None:
                raise UserError("--rate, --max-batch, --max-wait, --slo-p99 and --find-max-rate need --scenario server")
            return
        if self.batch_size is not None:
            raise UserError("the server scenario batches queries dynamically: use --max-batch instead of --batch-size")
        if self.server is None:
            object.__setattr__(self, "server", ServerSettings())  # raises: a server run needs a rate

    @property
    def effective_batch_size(self) -> int:
        if self.server is not None:
            return self.server.max_batch  # batches are padded to it (see scenarios/server.py)
        return self.batch_size or scenarios.SCENARIOS[self.scenario].default_batch_size

    def key(self) -> str:
        """A digest of everything that defines this cell; equal keys mean the same measurement.

        Resume compares it (with the hardware key) against stored records'
        configs, so a sweep never measures the same cell twice on one machine.
        """
        return config_key(self.to_dict())

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> "RunConfig":
        """Build a config from option names as the CLI spells them (`batch_size`, `slo_p99`, ...).

        This is the one translation from user-facing options to a config, used
        by `run` and by every cell of a sweep, so both validate alike.
        """
        unknown = sorted(set(values) - set(OPTION_KEYS))
        if unknown:
            raise UserError(f"unknown option {unknown[0]!r}; known: {', '.join(OPTION_KEYS)}")
        v = dict(values)
        for key in ("workload", "backend"):
            if key not in v:
                raise UserError(f"{key} is required")
        server_keys = ("rate", "max_batch", "max_wait", "slo_p99", "find_max_rate")
        server = None
        if any(v.get(k) not in (None, False) for k in server_keys):
            rate, slo = v.get("rate"), v.get("slo_p99")
            server = ServerSettings(
                rate_qps=limits.check("rate", parse_rate(rate, "--rate") if rate is not None else None),
                max_batch=limits.check("max_batch", _int(v, "max_batch", 1)),
                max_wait_s=limits.check("max_wait", parse_duration(v.get("max_wait", 0.0), "--max-wait")),
                slo_p99_s=limits.check("slo_p99", parse_duration(slo, "--slo-p99") if slo is not None else None),
                find_max_rate=_bool(v, "find_max_rate"),
            )
        return cls(
            workload=_str(v, "workload"),
            backend=_str(v, "backend"),
            size=_str(v, "size", "base"),
            device=_str(v, "device", "cpu"),
            precision=_str(v, "precision", "fp32"),
            scenario=_str(v, "scenario", "latency"),
            batch_size=limits.check("batch_size", _int(v, "batch_size", None)),
            steps=limits.check("steps", _int(v, "steps", None)),
            scheduler=_str(v, "scheduler", None),
            seed=limits.check("seed", _int(v, "seed", 0)),
            weights=_str(v, "weights", None),
            stop=StopRule(
                min_duration_s=limits.check("duration", _float(v, "duration", 5.0)),
                min_iterations=limits.check("min_iterations", _int(v, "min_iterations", 10)),
                max_iterations=limits.check("max_iterations", _int(v, "max_iterations", 100_000)),
                max_duration_s=limits.check("max_duration", _float(v, "max_duration", 600.0)),
                target_rel_iqr=limits.check("target_rel_iqr", _float(v, "target_rel_iqr", None)),
            ),
            warmup=WarmupRule(iterations=limits.check("warmup", _int(v, "warmup", 2)),
                              duration_s=limits.check("warmup_duration", _float(v, "warmup_duration", 1.0))),
            options=_pairs(v, "options"),
            labels=_pairs(v, "labels"),
            server=server,
            mode=_str(v, "mode", DEFAULT_MODE),
            params={key: limits.check(key, (_int if param.integer else _float)(v, key, None))
                    for key, param in PARAMS.items() if v.get(key) is not None},
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """The inverse of `to_dict` (a worker process rebuilds its cell's config from JSON)."""
        d = dict(data)
        server = d.pop("server", None)
        if d.get("scenario") == "server":
            d["batch_size"] = None  # to_dict writes the effective (max) batch
        return cls(
            **{k: v for k, v in d.items() if k not in ("stop", "warmup")},
            stop=StopRule(**d["stop"]),
            warmup=WarmupRule(**d["warmup"]),
            server=ServerSettings(**server) if server is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (StopRule, WarmupRule, ServerSettings)):
                value = asdict(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            data[f.name] = value
        data["batch_size"] = self.effective_batch_size
        # Left out at their defaults, so that the keys of cells stored before they existed stay the same
        # (resume matches on `key()`); `from_dict` reads an absent one as its default.
        if self.mode == DEFAULT_MODE:
            del data["mode"]
        if not self.params:
            del data["params"]
        return data


def config_key(config_dict: Mapping[str, Any]) -> str:
    """The digest `RunConfig.key` computes, from a config as stored in a record."""
    canonical = json.dumps(config_dict, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


# Option names accepted by `RunConfig.from_options` (and so by sweep files).
OPTION_KEYS = (
    "workload", "backend", "size", "device", "precision", "batch_size", "scenario", "steps", "scheduler",
    "seed", "weights", "duration", "min_iterations", "max_iterations", "max_duration", "target_rel_iqr",
    "warmup", "warmup_duration", "options", "labels", "rate", "max_batch", "max_wait", "slo_p99", "find_max_rate",
    "mode", *PARAMS,
)


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def _str(values: Mapping[str, Any], key: str, default: Any = ...) -> Any:
    value = values.get(key, default)
    if value is ...:
        raise UserError(f"{key} is required")
    if value is not None and not isinstance(value, str):
        raise UserError(f"{_flag(key)} must be a string, got {value!r}")
    return value


def _int(values: Mapping[str, Any], key: str, default: int | None) -> Any:
    value = values.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise UserError(f"{_flag(key)} must be an integer, got {value!r}")
    return value


def _float(values: Mapping[str, Any], key: str, default: float | None) -> Any:
    value = values.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise UserError(f"{_flag(key)} must be a number, got {value!r}")
    return float(value) if value is not None else None


def _bool(values: Mapping[str, Any], key: str) -> bool:
    value = values.get(key, False)
    if not isinstance(value, bool):
        raise UserError(f"{_flag(key)} must be true or false, got {value!r}")
    return value


def _pairs(values: Mapping[str, Any], key: str) -> dict[str, str]:
    """A KEY=VALUE mapping; scalars become strings, as they would from the command line."""
    value = values.get(key, {})
    if not isinstance(value, Mapping):
        raise UserError(f"{key} must be a table of KEY = VALUE, got {value!r}")
    flag = "--option" if key == "options" else "--label"
    pairs = parse_pairs([f"{k}={_scalar(v, key)}" for k, v in value.items()], flag)
    return pairs


def _scalar(value: Any, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise UserError(f"{key}: values must be strings or numbers, got {value!r}")
