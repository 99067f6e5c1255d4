"""Joining a Ray cluster and learning what its nodes are, for `--executor ray` (`bench/ray_executor.py`).

Which cluster. `--ray-address ADDR`, else `$RAY_ADDRESS`, else the cluster
that `ray start` last started on this machine (Ray's own default), else none:
then a local one-node cluster is started for the sweep (`ray.init()`) and
stopped after it, and stderr says so. That makes `--executor ray` work on a
laptop with nothing set up, and behave exactly as Ray's own tools do on a
machine of a cluster.

An address that does not answer is bad input (exit 2), said within a bounded
time: Ray's own connect retries for minutes and prints its retries on stderr.
So the address is first tried with a plain TCP connect (a refused or
unroutable port is said at once), then joined by a throwaway interpreter with
`CONNECT_TIMEOUT_S` to do it; only when that one got in does this process join.

Each node is then probed once, by a tiny task pinned to it: its hardware key
(`probes.environment.fingerprint`, the key its records will carry), its
default interpreter and its aigcbench version, which must be this one's (the
worker is our code). Ray itself is imported only here and in the executor:
installing it is the `aigcbench[ray]` extra.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import UserError

# Joining a live cluster takes about a second; a loaded machine, a few.
CONNECT_TIMEOUT_S = 30.0
TCP_TIMEOUT_S = 5.0
# A node's probe starts a Ray worker and fingerprints the machine (it reads NVML where there is a GPU).
PROBE_TIMEOUT_S = 300.0
# Records are small: the object store of a cluster started here needs little (Ray's floor is 75 MiB).
LOCAL_OBJECT_STORE_BYTES = 128 * 2**20
INSTALL_HINT = "pip install 'aigcbench[ray]'"
# Ray's own resources; everything else a node advertises is custom (`ray start --resources`).
_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
_BUILTIN_PREFIXES = ("node:", "accelerator_type:")

# Run by a throwaway interpreter: join the cluster, say how many nodes are alive, leave.
_JOIN_PROBE = (
    "import json, logging, sys\n"
    "import ray\n"
    "try:\n"
    "    ray.init(address=sys.argv[1], log_to_driver=False, logging_level=logging.ERROR)\n"
    "    print(json.dumps({'nodes': sum(1 for n in ray.nodes() if n['Alive'])}))\n"
    "except Exception as e:\n"
    "    print(json.dumps({'error': (type(e).__name__ + ': ' + str(e)).splitlines()[0]}))\n"
)


def import_ray() -> Any:
    """The `ray` module, or bad input: an executor that is not installed was asked for (nothing has run)."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, which is not installed here: {INSTALL_HINT}",
                        key="executor") from None
    return ray


@dataclass(frozen=True)
class Connection:
    address: str  # the GCS address joined (a cluster started here stops when the driver leaves it)
    how: str  # what stderr says about it


def connect(ray: Any, address: str | None, hardware_key: str) -> Connection:
    """Join the cluster at `address` (else `$RAY_ADDRESS`, else the one `ray start` ran here), or start one.

    A cluster started here advertises `hardware_key` as a custom resource, so
    cells pinned to this machine's hardware run on it as on a real cluster.
    """
    given = address or os.environ.get("RAY_ADDRESS") or None
    origin = "--ray-address" if address else "$RAY_ADDRESS"
    if given is None:
        given, origin = _last_started(), "the Ray cluster last started on this machine"
    init = {"log_to_driver": False, "logging_level": logging.ERROR}
    if given is None:
        _quiet_and_private()
        try:
            ray.init(address="local", include_dashboard=False, resources={hardware_key: 1},
                     object_store_memory=LOCAL_OBJECT_STORE_BYTES, **init)
        except Exception as err:  # Ray's own processes would not start here: say why, leave nothing behind
            ray.shutdown()
            raise UserError(f"--executor ray: no cluster given, and a local one would not start: "
                            f"{_first_line(err)}", key="ray_address") from None
        gcs = ray.get_runtime_context().gcs_address
        return Connection(gcs, f"no Ray cluster given (--ray-address, $RAY_ADDRESS) or started on this "
                                     f"machine: started a local one-node cluster at {gcs} for this sweep")
    _check_answers(given, origin)
    try:
        ray.init(address=given, **init)
    except Exception as err:  # it answered the probe a moment ago: say what Ray says now
        raise UserError(f"{origin} {given}: cannot join the Ray cluster: {_first_line(err)}",
                        key="ray_address") from None
    gcs = ray.get_runtime_context().gcs_address
    return Connection(gcs, f"joined the Ray cluster at {gcs} ({origin})")


def _quiet_and_private() -> None:
    """The environment a cluster started here inherits: no usage report, a token held in memory only.

    Ray sends usage statistics unless told not to (no network at run time).
    A cluster `ray.init()` starts turns on token authentication and writes
    the token to ~/.ray/auth_token, where every later `ray start` of the user
    would find it and turn authentication on too: this one's token lives in
    the environment of this sweep's processes instead. A mode the user set
    (`RAY_AUTH_MODE`) is theirs.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if "RAY_AUTH_MODE" not in os.environ:  # ray.init() turns token mode on itself, and finds this token
        os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))


def _last_started() -> str | None:
    """The address `ray start` recorded on this machine (Ray's default for `ray.init()`), or None."""
    try:
        from ray._private.utils import read_ray_address  # what ray.init() itself reads

        return read_ray_address(None) or None
    except Exception:  # a Ray that moved it: start a local cluster rather than fail
        return None


def _check_answers(address: str, origin: str) -> None:
    """Bad input unless a Ray cluster answers at `address`, said within a bounded time."""
    host, port = _host_port(address)
    if host is not None:
        try:
            with socket.create_connection((host, port), timeout=TCP_TIMEOUT_S):
                pass
        except OSError as err:
            why = "no answer" if isinstance(err, socket.timeout) else (err.strerror or str(err))
            resolved = "" if address.endswith(f"{host}:{port}") else ", as Ray resolves it"
            raise UserError(f"{origin} {address}: nothing answers at {host}:{port}{resolved} ({why}); is the "
                            f"Ray head running there (`ray start --head`)?{_forget(origin)}",
                            key="ray_address") from None
    said = _join_once(address)
    if "error" in said:
        raise UserError(f"{origin} {address}: not a Ray cluster this can join: {said['error']}{_forget(origin)}",
                        key="ray_address")


def _forget(origin: str) -> str:
    return " (`ray stop` forgets it; --ray-address names another)" if origin.startswith("the Ray cluster") else ""


def _host_port(address: str) -> tuple[str | None, int]:
    """Where to try a TCP connect: the host as Ray will resolve it (loopback names become the node's IP)."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        return None, 0  # "auto" and the like: the join probe tells
    host = host.strip("[]")
    try:
        from ray._private.services import resolve_ip_for_localhost

        host = resolve_ip_for_localhost(host)
    except Exception:
        pass
    return host, int(port)


def _join_once(address: str) -> dict:
    """What a throwaway interpreter says after trying to join: {'nodes': N} or {'error': why}."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _JOIN_PROBE, address], capture_output=True, text=True,
            timeout=CONNECT_TIMEOUT_S, stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"it did not let a driver join within {CONNECT_TIMEOUT_S:g} s"}
    for line in reversed(done.stdout.splitlines()):
        try:
            said = json.loads(line)
        except ValueError:
            continue
        if isinstance(said, dict):
            return said
    return {"error": f"the join probe exited {done.returncode}: {(done.stderr.strip().splitlines() or ['-'])[-1]}"}


def _first_line(err: BaseException) -> str:
    return (f"{type(err).__name__}: {err}".splitlines() or [type(err).__name__])[0]


@dataclass(frozen=True)
class Node:
    """One alive node: what Ray says it has, and what its probe found."""

    id: str
    ip: str
    resources: Mapping[str, float]  # totals, as `ray start` declared them
    environment: Mapping[str, Any]  # `probes.environment.fingerprint()` taken on the node
    python: str  # its default interpreter (the one its Ray workers run)

    @property
    def hardware_key(self) -> str:
        return str(self.environment["hardware_key"])

    @property
    def cpus(self) -> float:
        return float(self.resources.get("CPU", 0))

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0))

    @property
    def custom(self) -> tuple[str, ...]:
        return tuple(sorted(custom_resources(self.resources)))

    @property
    def kind(self) -> tuple:
        """Nodes of one kind answer a cell's check alike: same hardware, interpreter, custom resources, GPUs."""
        return (self.hardware_key, self.python, self.custom, self.gpus)

    def label(self) -> str:
        return f"{self.ip} ({self.id[:8]})"


def custom_resources(resources: Mapping[str, float]) -> dict[str, float]:
    return {name: amount for name, amount in resources.items()
            if name not in _BUILTIN_RESOURCES and not name.startswith(_BUILTIN_PREFIXES)}


def probe_node() -> dict:
    """Runs on a node (a Ray task): what the driver needs to place cells there and to resume them."""
    import ray

    from .interpreters import own_version
    from .probes.environment import fingerprint

    return {"environment": fingerprint(), "python": sys.executable, "version": own_version(),
            "node": ray.get_runtime_context().get_node_id()}


def discover(ray: Any) -> list[Node]:
    """Every alive node of the cluster, probed in parallel; bad input if one cannot run aigcbench's tasks."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .interpreters import own_version

    alive = [n for n in ray.nodes() if n.get("Alive")]
    task = ray.remote(max_calls=1, max_retries=0, num_cpus=0)(probe_node)
    refs = {task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(): n
            for n in alive}
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
    for ref in late:
        ray.cancel(ref, force=True)
    if late:
        raise UserError(f"Ray node {refs[late[0]]['NodeManagerAddress']} did not answer a probe within "
                        f"{PROBE_TIMEOUT_S:g} s", key="ray_address")
    nodes = []
    for ref in ready:
        info = refs[ref]
        try:
            said = ray.get(ref)
        except Exception as err:
            raise UserError(f"Ray node {info['NodeManagerAddress']} cannot run aigcbench's tasks (is aigcbench "
                            f"installed in the environment its `ray start` ran from?): {_first_line(err)}",
                            key="ray_address") from None
        if said["version"] != own_version():
            raise UserError(f"Ray node {info['NodeManagerAddress']} has aigcbench {said['version']}, this is "
                            f"{own_version()}: every node must run the same version", key="ray_address")
        nodes.append(Node(info["NodeID"], info["NodeManagerAddress"], dict(info.get("Resources", {})),
                          said["environment"], said["python"]))
    return sorted(nodes, key=lambda n: (n.ip, n.id))


def describe(nodes: list[Node]) -> str:
    """What the cluster has, for a refusal: each kind of node with its custom resources and GPUs."""
    kinds: dict[str, int] = {}
    for node in nodes:
        extra = [f"custom resources {', '.join(node.custom)}"] if node.custom else ["no custom resource"]
        extra += [f"{node.gpus:g} GPU(s)"] if node.gpus else ["no GPU"]
        text = f"{node.hardware_key} ({'; '.join(extra)})"
        kinds[text] = kinds.get(text, 0) + 1
    return "; ".join(f"{count} × {text}" for text, count in kinds.items()) or "no alive node"
