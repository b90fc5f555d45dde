"""The Ray backend of the execution layer: ``Executor(workers, backend="ray")``, ``--ray [ADDRESS]``.

Ray core only (actors and the object store). The shape is the one of the process backend:

- one long-lived actor per worker (``num_cpus=1``), each with its own `WorkerContext`: it
  builds its envs from the `EnvSpec` of the tasks (nothing of the driver's env crosses);
- ``shared`` is put once per call (``ray.put``) and handed to the actors by reference; an
  actor fetches and unpickles it once per call, not once per task;
- tasks are consumed lazily (a new one only when an actor is free) and results come back as
  they complete (``ray.wait``);
- an actor that dies (`ray.exceptions.RayActorError`: killed, node lost, out of memory) has
  its task retried on a fresh actor, up to ``max_retries`` times, then `WorkerLost`.

Tasks and results are values, so the workers never need the driver's filesystem: each actor
runs in a scratch working directory of its own (so a task that opened a path relative to the
driver's directory would fail locally exactly as it would on another machine), and only the
driver writes files. The actors need the same Python packages as the driver (this project,
grid2op, lightsim2grid, torch) installed on every node; an env given by its folder path must
exist at that absolute path on every node (bundled test envs need nothing).

`init_ray` starts or joins Ray: without an address a local Ray with ``num_cpus=workers`` (an
already initialized Ray is reused), with ``"auto"`` or ``HOST:PORT`` the running cluster.
Importing this module does not import Ray.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import warnings
from itertools import count
from typing import Any

from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import (
    BACKENDS,
    TaskFeed,
    WorkerContext,
    _portable,
    register_backend,
)

INSTALL_HINT = "--ray needs Ray: pip install '.[ray]'"


def import_ray():
    """``ray``, or a `UserError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UserError(INSTALL_HINT) from exc
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None):
    """Start a local Ray (``address`` None or ``"local"``) or join a cluster; returns ``ray``.

    A Ray already initialized in this process is reused as it is.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {
        "ignore_reinit_error": True,
        "include_dashboard": False,
        "logging_level": "WARNING",
        "configure_logging": True,
    }
    if address in (None, "", "local"):  # a new local Ray, even if `ray start` ran here
        kwargs["address"] = "local"
        kwargs["num_cpus"] = None if num_cpus is None else int(num_cpus)
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise UserError(f"cannot join the Ray cluster at {address}: {exc}") from exc
    return ray


def cluster_cpus() -> int:
    """CPUs of the Ray this process is connected to (0 if Ray is not initialized)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return 0
    return int(ray.cluster_resources().get("CPU", 0))


class _Worker:
    """Body of a worker actor (wrapped by `ray.remote` in `_actor_class`)."""

    def __init__(self):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        self.scratch = tempfile.mkdtemp(prefix="dg2op-ray-worker-")
        os.chdir(self.scratch)  # a directory of its own: tasks never rely on the driver's
        self.ctx = WorkerContext()
        self.token: Any = None
        self.shared: Any = None
        self._one_thread()

    @staticmethod
    def _one_thread() -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.get_num_threads() != 1:
            torch.set_num_threads(1)

    def run(self, fn, task, token, shared_ref):
        """``(ok, value)``: the result, or the exception (re-raised by the driver)."""
        try:
            if token != self.token:
                import ray

                self.token, self.shared = None, None  # one call at a time: keep only its input
                self.shared = ray.get(shared_ref[0])
                self.token = token
            self._one_thread()
            result = fn(self.ctx, task, self.shared)
            self._one_thread()  # the task may have imported torch
            return True, result
        except BaseException as exc:  # noqa: BLE001 - sent to the driver, which raises it
            return False, _portable(exc)

    def info(self) -> dict:
        """Where this actor runs (for tests and diagnostics)."""
        import socket

        import ray

        return {
            "pid": os.getpid(),
            "cwd": os.getcwd(),
            "host": socket.gethostname(),
            "node": ray.get_runtime_context().get_node_id(),
        }

    def close(self) -> None:
        self.ctx.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


_ACTOR = None


def _actor_class():
    global _ACTOR
    if _ACTOR is None:
        ray = import_ray()
        _ACTOR = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(_Worker)
    return _ACTOR


class RayBackend:
    """Long-lived Ray actors, one per worker (see the module docstring)."""

    _ids = count()

    def __init__(self, workers: int, max_retries: int = 2):
        self.workers, self.max_retries = int(workers), int(max_retries)
        self.ray = init_ray(None, self.workers)  # reuses a Ray joined by `init_ray(address)`
        cpus = cluster_cpus()
        if cpus and self.workers > cpus:
            warnings.warn(
                f"{self.workers} Ray workers but the cluster has {cpus} CPUs: "
                "the extra actors wait for a free CPU",
                stacklevel=2,
            )
        self._actors: list = []
        self._token_prefix = f"{os.getpid()}-{id(self)}"

    def _new_actor(self):
        return _actor_class().remote()

    def _ensure(self) -> None:
        while len(self._actors) < self.workers:
            self._actors.append(self._new_actor())

    def actors(self) -> list:
        """The live actor handles (started if need be)."""
        self._ensure()
        return list(self._actors)

    def imap(self, fn, tasks, shared=None):
        ray = self.ray
        from ray.exceptions import RayActorError, WorkerCrashedError

        lost_errors = (RayActorError, WorkerCrashedError)
        token = f"{self._token_prefix}-{next(self._ids)}"
        shared_ref = [ray.put(shared)]  # in a list: the actor fetches it once, not per task
        feed = TaskFeed(tasks, self.max_retries)
        pending: dict = {}  # object ref -> (actor, (task_id, task))
        self._ensure()
        try:
            while True:
                busy = {id(actor) for actor, _ in pending.values()}
                for actor in self._actors:  # give every idle actor a task
                    if id(actor) in busy or (item := feed.next()) is None:
                        continue
                    ref = actor.run.remote(fn, item[1], token, shared_ref)
                    pending[ref] = (actor, item)
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    actor, item = pending.pop(ref)
                    task = item[1]
                    try:
                        ok, value = ray.get(ref)
                    except lost_errors as exc:
                        self._lost(actor, item, feed, exc)
                        continue
                    if not ok:
                        raise value
                    yield task, value
        except BaseException:
            self.close()  # a failed or interrupted call leaves no actor behind
            raise

    def _lost(self, actor, item, feed, exc) -> None:
        try:
            self.ray.kill(actor)
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        self._actors = [a for a in self._actors if a is not actor]
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        feed.lost(item, f"a Ray worker: {reason}")
        self._actors.append(self._new_actor())

    def close(self) -> None:
        """Stop the actors (Ray itself stays up for the next executor of this process)."""
        actors, self._actors = self._actors, []
        if not actors:
            return
        ray = self.ray
        try:
            ray.get([a.close.remote() for a in actors], timeout=10)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass


if "ray" not in BACKENDS:
    register_backend("ray", RayBackend)
