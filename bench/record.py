"""One immutable measurement result and its JSON form.

A record carries everything needed to trust and re-derive its numbers: the
configuration, the environment, the raw samples, the statistics derived from
them, and a status (`ok`, `invalid`, `failed`) with the reason. Rendering lives
in `aigcbench.reports`, never here.

Every metric key names its unit (`_s`, `_bytes`, `_j`, `_items_per_s`) and every
JSON document carries `schema_version`, so readers can refuse what they do not
understand (pyperf, asv).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import UserError
from .outputs import write_text_atomic

SCHEMA_VERSION = 1
STATUSES = ("ok", "invalid", "failed")

# Top-level keys a reader may rely on (DESIGN.md, "CLI contract").
REQUIRED_KEYS = (
    "schema_version",
    "run_id",
    "created_at",
    "status",
    "workload",
    "backend",
    "scenario",
    "environment",
    "metrics",
    "samples",
    "warnings",
    "labels",
)


def new_run_id() -> str:
    return uuid.uuid4().hex


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Record:
    """A stored result. Build it once, never mutate it; `to_dict` returns a copy."""

    status: str
    workload: Mapping[str, Any]
    backend: Mapping[str, Any]
    scenario: Mapping[str, Any]
    environment: Mapping[str, Any]
    metrics: Mapping[str, Any]
    samples: Mapping[str, Any]
    warnings: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    git_commit: str | None = None
    run_id: str = field(default_factory=new_run_id)
    created_at: str = field(default_factory=utc_now)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if self.status != "ok" and not self.reason:
            raise ValueError(f"a {self.status} record needs a reason")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "status": self.status,
            "reason": self.reason,
            "workload": copy.deepcopy(dict(self.workload)),
            "backend": copy.deepcopy(dict(self.backend)),
            "scenario": copy.deepcopy(dict(self.scenario)),
            "environment": copy.deepcopy(dict(self.environment)),
            "metrics": copy.deepcopy(dict(self.metrics)),
            "samples": copy.deepcopy(dict(self.samples)),
            "warnings": list(self.warnings),
            "labels": dict(self.labels),
            "git_commit": self.git_commit,
            "config": copy.deepcopy(dict(self.config)),
            "metadata": copy.deepcopy(dict(self.metadata)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Record":
        """Rebuild a record from its JSON form; refuses other schema versions."""
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise UserError(
                f"record schema_version {version!r} is not supported (this aigcbench reads {SCHEMA_VERSION})"
            )
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise UserError(f"record lacks required keys: {', '.join(missing)}")
        return cls(
            status=data["status"],
            reason=data.get("reason"),
            workload=data["workload"],
            backend=data["backend"],
            scenario=data["scenario"],
            environment=data["environment"],
            metrics=data["metrics"],
            samples=data["samples"],
            warnings=tuple(data["warnings"]),
            labels=data["labels"],
            config=data.get("config", {}),
            metadata=data.get("metadata", {}),
            git_commit=data.get("git_commit"),
            run_id=data["run_id"],
            created_at=data["created_at"],
            schema_version=version,
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False)


def write_json(records: list[Record] | Record, path: Path, flag: str = "--json") -> None:
    """Write one record (an object) or several (a list) atomically: never a half-written file."""
    payload: Any = records.to_dict() if isinstance(records, Record) else [r.to_dict() for r in records]
    # The callers check the path before measuring (`outputs.check_output`); a failure now is one line too.
    write_text_atomic(Path(path), json.dumps(payload, indent=2, allow_nan=False) + "\n", flag)
