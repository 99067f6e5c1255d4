"""The Ray executor (`aigcbench sweep FILE --executor ray`): each cell a Ray task on the node it needs.

Placement. A cell may run on a node that has what it asks for: the custom
resource its `hardware` names (`ray start --resources='{"nvidia-l4": 1}'`;
a node whose hardware key is that name also qualifies), a GPU for a CUDA
cell, and at least one CPU (a head started with `--num-cpus=0` is kept free,
as Ray users mean it). A cell nothing in the cluster can take is bad input,
refused before the sweep starts with what the cluster has.

One cell per node at a time. A cell measures the machine it runs on, so no
two may share one: the driver hands each idle node the next cell that fits
it, pinned there (`NodeAffinitySchedulingStrategy`), and the task holds the
whole node — all its CPUs and GPUs and all of the hardware resource it asked
for — so no other Ray work is scheduled beside it either. Nodes work in
parallel; every record is stored the moment it arrives.

The task (`max_calls=1`: a fresh Ray worker per cell, never retried) runs the
cell exactly as the local executor does — `LocalWorkers` with a cold start on
that node: the same worker process, timeout, memory limit, isolation and
failure records, in the cell's interpreter as that node resolves it
(`local_executor.cell_interpreter`). The driver adds where it ran under
`metadata.executor` ({"name": "ray", "node": id, "node_ip": ip}). A task Ray
lost (its node died, Ray's memory monitor killed it) becomes a `failed`
record carrying that node's environment.

The preflight (`bench/cell_check.py`) runs on the nodes too: once per kind of
node a cell may go to (same hardware, interpreter, custom resources and
GPUs). A cell that only some kinds can run is kept to those.

Resume. Records carry the hardware key of the machine that measured them,
not the driver's, so a cell counts as stored when its config was measured on
the hardware of a node it may be placed on, in the interpreter it would run
in there (`placements`).

Ctrl-C cancels every outstanding task by force (`ray.cancel(force=True)`):
Ray kills the task's worker and, with it, the cell's worker process (its
direct child; `RAY_kill_child_processes_on_worker_exit`, on by default).
A gentle cancel would not do: Ray delivers it as an exception the task sees
only when it next runs Python code, and the task sleeps in `select()` on its
cell's worker until the cell's timeout. What finished is stored already.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterator

from .errors import BackendUnavailable, UserError
from .ray_cluster import Connection, Node, connect, describe, discover, import_ray
from .record import Record
from .runner import RunObserver
from .sweep_file import SweepCell

# How long Ctrl-C waits for Ray to confirm the cancelled tasks are gone (it kills their workers at once).
CANCEL_WAIT_S = 10.0


def measure_on_node(cell: SweepCell) -> dict:
    """Runs on a node (a Ray task in a fresh worker): the cell measured as the local executor measures it."""
    import ray

    from .launchers import ColdLauncher
    from .local_executor import LocalWorkers
    from .runner import Silent

    node = ray.get_runtime_context().get_node_id()
    workers = LocalWorkers(ColdLauncher())
    try:
        return {"record": workers.run(cell, Silent()).to_dict(), "node": node}
    except BackendUnavailable as err:
        return {"unavailable": str(err), "node": node}
    except UserError as err:
        return {"refused": str(err), "key": err.key, "node": node}
    finally:
        workers.close()


def check_on_node(cells: list[SweepCell]) -> dict:
    """Runs on a node (a Ray task): each cell's preflight there, and the interpreter it would run in there."""
    from .launchers import ColdLauncher
    from .local_executor import LocalWorkers, cell_interpreter

    workers = LocalWorkers(ColdLauncher())
    try:
        return {"results": workers.check(cells), "pythons": [cell_interpreter(cell) for cell in cells]}
    except UserError as err:
        return {"refused": str(err), "key": err.key}
    finally:
        workers.close()


def _key(cell: SweepCell) -> tuple[str, str]:
    return cell.origin, cell.config.key()


class RayExecutor:
    """Cells as Ray tasks on a cluster's nodes, one per node at a time; joins (or starts) the cluster at once.

    `address`: see `bench/ray_cluster.py`; `hardware_key`: this machine's,
    advertised by a cluster started here. `note` says which cluster was
    joined or started, and its nodes (for stderr, once the cells are checked).
    """

    def __init__(self, address: str | None, hardware_key: str) -> None:
        self._ray = import_ray()
        self.connection: Connection = connect(self._ray, address, hardware_key)
        try:
            self.nodes: list[Node] = discover(self._ray)
        except BaseException:
            self.close()
            raise
        self.note = f"{self.connection.how}; {len(self.nodes)} node(s): {describe(self.nodes)}"
        self._allowed: dict[tuple[str, str], list[Node]] = {}  # a cell's nodes, once the preflight has narrowed them
        self._pythons: dict[tuple[tuple[str, str], tuple], str] = {}  # (cell, node kind) -> its interpreter there
        self._tasks: dict[str, Any] = {}

    # -- placement -------------------------------------------------------------------------------------------
    def _fitting(self, cell: SweepCell) -> list[Node]:
        return self._allowed.get(_key(cell)) or [node for node in self.nodes if _fits(node, cell)]

    def skipped(self, cell: SweepCell, hardware_key: str) -> str | None:
        """Nothing is skipped: a cell no node can take is refused (the file asks the cluster for what it lacks)."""
        if not self._fitting(cell):
            raise UserError(f"asks for {_need(cell)}, which no node of the Ray cluster at "
                            f"{self.connection.address} has; it has {describe(self.nodes)}", key="hardware")
        return None

    def placements(self, cell: SweepCell, hardware_key: str) -> list[tuple[str, str]]:
        """(hardware key, interpreter) of every node `cell` may run on: where a stored record of it counts."""
        found = []
        for node in self._fitting(cell):
            python = self._pythons.get((_key(cell), node.kind)) or cell.python or node.python
            if (node.hardware_key, python) not in found:
                found.append((node.hardware_key, python))
        return found

    # -- preflight ------------------------------------------------------------------------------------------
    def check(self, cells: list[SweepCell]) -> list[dict | None]:
        """The cells' runtime checks, on one node of each kind they may go to; one result per cell."""
        groups: dict[tuple, list[SweepCell]] = {}
        for cell in cells:
            for kind in dict.fromkeys(node.kind for node in self._fitting(cell)):
                groups.setdefault(kind, []).append(cell)
        task = self._task(check_on_node)
        refs = {kind: task.options(**_hold(self._first_of(kind))).remote(group) for kind, group in groups.items()}
        found: dict[tuple[str, str], dict[tuple, tuple[dict | None, str]]] = {}
        for kind, ref in refs.items():
            said = self._said(ref)
            if said is None:
                continue  # the check was lost with its node: each cell's worker checks again before measuring
            if "refused" in said:
                raise UserError(f"on Ray node {self._first_of(kind).ip}: {said['refused']}", key=said.get("key"))
            for cell, result, python in zip(groups[kind], said["results"], said["pythons"]):
                found.setdefault(_key(cell), {})[kind] = (result, python)
        return [self._merge(cell, found.get(_key(cell), {})) for cell in cells]

    def _said(self, ref: Any) -> dict | None:
        """A task's answer; None when Ray lost the task (an exception in our own code is a bug, and raises)."""
        try:
            return self._ray.get(ref)
        except self._ray.exceptions.RayTaskError:
            raise
        except self._ray.exceptions.RayError:
            return None

    def _first_of(self, kind: tuple) -> Node:
        return next(node for node in self.nodes if node.kind == kind)

    def _merge(self, cell: SweepCell, by_kind: dict[tuple, tuple[dict | None, str]]) -> dict | None:
        """One verdict from each kind's: a refusal anywhere refuses; else the kinds that can run it keep it."""
        if not by_kind:
            return None
        for result, _ in by_kind.values():
            if result is not None and result.get("exit_code") == UserError.exit_code:
                return result
        able = [kind for kind, (result, _) in by_kind.items()
                if result is None or result.get("exit_code") != BackendUnavailable.exit_code]
        if not able:
            return next(iter(by_kind.values()))[0]  # unavailable on every kind: the first one's reason
        self._allowed[_key(cell)] = [node for node in self._fitting(cell) if node.kind in able]
        self._pythons.update({(_key(cell), kind): by_kind[kind][1] for kind in able})
        return by_kind[able[0]][0]

    # -- running --------------------------------------------------------------------------------------------
    def run(self, cell: SweepCell, observer: RunObserver) -> Record:
        """One cell, blocking until its record is back (a sweep goes through `run_cells`)."""
        for _, outcome in self.run_cells([(0, cell)], _Single(observer)):
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        raise BackendUnavailable(f"no live node of the Ray cluster can take {cell.origin}")

    def run_cells(self, cells: list[tuple[int, SweepCell]], progress: Any) -> Iterator[tuple[int, Any]]:
        """Run `cells` across the nodes, one per node at a time; yield (index, record or refusal) as each ends.

        Closing the iterator early (Ctrl-C in the caller) cancels what is still running.
        """
        queue, running = list(cells), {}
        idle = list(self.nodes)
        try:
            while queue or running:
                self._fill(queue, running, idle, progress)
                if not running:  # what is left fits only nodes that died during the sweep
                    for index, cell in queue:
                        yield index, BackendUnavailable("no live node of the Ray cluster can take it any more")
                    return
                done, _ = self._ray.wait(list(running), num_returns=1)
                for ref in done:
                    index, cell, node = running.pop(ref)
                    outcome, alive = self._outcome(ref, cell, node)
                    if alive:
                        idle.append(node)
                    else:
                        self.nodes = [n for n in self.nodes if n.id != node.id]
                    yield index, outcome
        finally:
            self._cancel(list(running))

    def _fill(self, queue: list, running: dict, idle: list[Node], progress: Any) -> None:
        """Give each idle node the first queued cell that may run on it."""
        for node in list(idle):
            pick = next((item for item in queue if any(n.id == node.id for n in self._fitting(item[1]))), None)
            if pick is None:
                continue
            queue.remove(pick)
            idle.remove(node)
            index, cell = pick
            ref = self._task(measure_on_node).options(**_hold(node, cell)).remote(cell)
            running[ref] = (index, cell, node)
            progress.cell_started(index, cell).stage(f"running on Ray node {node.label()}")

    def _outcome(self, ref: Any, cell: SweepCell, node: Node) -> tuple[Any, bool]:
        """The cell's record (or refusal) from its task, and whether its node is still there to take the next."""
        errors = self._ray.exceptions
        try:
            said = self._ray.get(ref)
        except errors.RayTaskError:
            raise  # an exception in our own task code: a bug, with its traceback
        except errors.RayError as err:
            return self._lost(cell, node, err), self._alive(node)
        if "unavailable" in said:
            return BackendUnavailable(said["unavailable"]), True
        if "refused" in said:
            return UserError(said["refused"], key=said.get("key")), True
        record = Record.from_dict(said["record"])
        where = {"name": "ray", "node": said["node"], "node_ip": node.ip}
        return dataclasses.replace(record, metadata={**record.metadata, "executor": where}), True

    def _lost(self, cell: SweepCell, node: Node, err: BaseException) -> Record:
        """A `failed` record for a task Ray lost, with the environment of the node it ran on."""
        from .runner import failure_record

        said = (f"{type(err).__name__}: {err}".splitlines() or [type(err).__name__])[0]
        record = failure_record(cell.config, f"the Ray task was lost on node {node.label()}: {said}",
                                metadata={"executor": {"name": "ray", "node": node.id, "node_ip": node.ip}})
        return dataclasses.replace(record, environment=dict(node.environment))

    def _alive(self, node: Node) -> bool:
        return any(n.get("NodeID") == node.id and n.get("Alive") for n in self._ray.nodes())

    def _cancel(self, refs: list) -> None:
        """Stop the tasks of `refs` now, and wait (a little) until Ray says they are gone."""
        if not refs:
            return
        for ref in refs:
            self._ray.cancel(ref, force=True)
        self._ray.wait(refs, num_returns=len(refs), timeout=CANCEL_WAIT_S)

    def _task(self, function: Callable) -> Any:
        """`function` as a Ray remote function: a fresh worker per call, never retried (a crash is a verdict)."""
        if function.__name__ not in self._tasks:
            self._tasks[function.__name__] = self._ray.remote(max_calls=1, max_retries=0)(function)
        return self._tasks[function.__name__]

    def close(self) -> None:
        """Leave the cluster (a cluster started for this sweep stops with it)."""
        if self._ray.is_initialized():
            self._ray.shutdown()


class _Single:
    """The progress of one cell run through `run`: its observer."""

    def __init__(self, observer: RunObserver) -> None:
        self._observer = observer

    def cell_started(self, index: int, cell: SweepCell) -> RunObserver:
        return self._observer


def _needs_gpu(cell: SweepCell) -> bool:
    return str(cell.config.device).startswith("cuda")


def _fits(node: Node, cell: SweepCell) -> bool:
    if node.cpus < 1 or (_needs_gpu(cell) and node.gpus < 1):
        return False
    return cell.hardware is None or cell.hardware in node.resources or cell.hardware == node.hardware_key


def _need(cell: SweepCell) -> str:
    parts = [f"hardware {cell.hardware!r}"] if cell.hardware else []
    parts += [f"a GPU (device {cell.config.device})"] if _needs_gpu(cell) else []
    return " with ".join(parts) or "a node with a CPU"


def _hold(node: Node, cell: SweepCell | None = None) -> dict[str, Any]:
    """Task options that pin it to `node` and hold all of it: every CPU, GPU and the hardware resource asked for."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {
        "num_cpus": node.cpus, "num_gpus": node.gpus,
        "scheduling_strategy": NodeAffinitySchedulingStrategy(node.id, soft=False),
    }
    if cell is not None and cell.hardware in node.resources:
        options["resources"] = {cell.hardware: node.resources[cell.hardware]}
    return options
