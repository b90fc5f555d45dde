"""The one execution layer: every stage with workers runs its tasks through an `Executor`.

A *task function* ``fn(ctx, task, shared)`` runs in a worker:

- ``ctx`` is the worker's `WorkerContext`: ``ctx.env(spec)`` makes an env from an `EnvSpec`
  once and keeps it (grid2op envs and observations do not pickle reliably: workers build
  their own), ``ctx.cache`` keeps any other long-lived object (an agent, a fitted model);
- ``task`` is a small picklable record (an episode, a shard, a scenario batch, an MI column);
- ``shared`` is a read-only input common to every task of one call (network weights, a fitted
  model, a data matrix): it crosses to each worker once per call, not once per task.

Results must be arrays and small records; **only the driver writes files**, so no shared
filesystem is assumed and ``--resume`` is the same on every backend. Task functions derive
every random number from the task itself (its seed), so the results do not depend on the
backend, the number of workers or which worker ran which task.

Backends (`BACKENDS`): ``"serial"`` runs the tasks in this process (one context, the
driver's own); ``"processes"`` runs long-lived local worker processes, each owning a pipe
to the driver (the same shape as a Ray actor: the driver knows which worker holds which
shared input, and a worker that dies has its task retried on a new one, up to
``max_retries`` times). A new backend (Ray) is one class with ``imap`` and ``close`` plus an
entry in `BACKENDS`.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from distributed_grid2op.errors import UserError

TaskFn = Callable[["WorkerContext", Any, Any], Any]


class WorkerLost(UserError):
    """A worker died more often than the retries allow (the run can be resumed)."""


@contextmanager
def torch_threads(n: int = 1):
    """Run a block with ``n`` torch intra-op threads and restore the caller's setting after.

    Small policy networks are fastest on one thread, and one thread is what makes forked
    workers safe (a forked OpenMP pool deadlocks). Does nothing if torch is not imported.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class WorkerContext:
    """What a worker keeps between tasks: its envs (one per `EnvSpec`) and a cache."""

    envs: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)

    def env(self, spec):
        """The env of ``spec`` in this worker (made on first use, ~1 s on case14)."""
        key = spec.key()
        if key not in self.envs:
            self.envs[key] = spec.make()  # make_env silences grid2op's chatter itself
        return self.envs[key]

    def close(self) -> None:
        for env in self.envs.values():
            try:
                env.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self.envs.clear()
        self.cache.clear()


#: the driver's own context (serial backend); forked workers start from a copy of it
LOCAL = WorkerContext()


def available_cpus() -> int:
    """CPUs this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_workers(n_tasks: int | None = None) -> int:
    """Available CPUs, capped by the number of tasks when known."""
    cpus = available_cpus()
    return max(1, cpus if n_tasks is None else min(cpus, int(n_tasks)))


# ---------------------------------------------------------------------------------------------
class Executor:
    """Runs task functions over tasks on one backend; use as a context manager.

    Args:
        workers: number of workers (1: serial, in this process).
        backend: ``"processes"`` (default when ``workers > 1``) or ``"serial"``.
        max_retries: how many times a task whose worker died is given to a new worker.
    """

    def __init__(self, workers: int = 1, backend: str | None = None, *, max_retries: int = 2):
        workers = int(workers)
        if workers < 1:
            raise UserError(f"workers must be >= 1, got {workers}")
        if backend is None:
            backend = "serial" if workers == 1 else "processes"
        if backend not in BACKENDS and backend in BACKEND_MODULES:  # a plug-in registers itself
            import importlib

            importlib.import_module(BACKEND_MODULES[backend])
        if backend not in BACKENDS:
            raise UserError(
                f"unknown executor backend {backend!r}; choose from {', '.join(BACKENDS)}"
            )
        self.workers, self.backend_name = workers, backend
        self._backend = BACKENDS[backend](workers, max_retries=int(max_retries))

    def imap(self, fn: TaskFn, tasks: Iterable, shared: Any = None) -> Iterator[tuple[Any, Any]]:
        """``(task, result)`` pairs as tasks complete (any order).

        ``tasks`` is consumed lazily, one more whenever a worker is free, so a generator may
        plan the next task from the results already received.
        """
        return self._backend.imap(fn, tasks, shared)

    def map(self, fn: TaskFn, tasks: Iterable, shared: Any = None) -> list:
        """Results in the order of ``tasks``."""
        tasks = list(tasks)
        out: list = [None] * len(tasks)
        for (i, _), result in self.imap(_Indexed(fn), enumerate(tasks), shared):
            out[i] = result
        return out

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class TaskFeed:
    """What a backend hands out next: retried tasks first, then the caller's tasks, read
    lazily; and the retry bound. Items are ``(task_id, task)``."""

    def __init__(self, tasks: Iterable, max_retries: int):
        self._source, self._ids = iter(tasks), count()
        self.max_retries, self.retry, self.attempts = int(max_retries), [], {}
        self.exhausted = False

    def next(self):
        """The next ``(task_id, task)``, or None when there is nothing to hand out now."""
        if self.retry:
            return self.retry.pop(0)
        if self.exhausted:
            return None
        try:
            return next(self._ids), next(self._source)
        except StopIteration:
            self.exhausted = True
            return None

    def lost(self, item, why: str) -> None:
        """The worker running ``item`` died: retry it, or `WorkerLost` past the bound."""
        task_id = item[0]
        self.attempts[task_id] = self.attempts.get(task_id, 0) + 1
        if self.attempts[task_id] > self.max_retries:
            raise WorkerLost(
                f"a worker died {self.attempts[task_id]} times on the same task ({why}); "
                "rerun with the same options to resume"
            )
        self.retry.append(item)


@dataclass(frozen=True)
class _Indexed:
    """``fn`` applied to the task of an ``(index, task)`` pair (picklable if ``fn`` is)."""

    fn: TaskFn

    def __call__(self, ctx, item, shared):
        return self.fn(ctx, item[1], shared)


class SerialBackend:
    """Every task in this process, in order, with the driver's context `LOCAL`."""

    def __init__(self, workers: int = 1, max_retries: int = 0):
        self.workers = 1

    def imap(self, fn, tasks, shared=None):
        with torch_threads(1):
            for task in tasks:
                yield task, fn(LOCAL, task, shared)

    def close(self) -> None:
        pass


# ---- local worker processes -------------------------------------------------------------------
def _worker_main(conn) -> None:  # runs in the worker process
    """Receive ``(task_id, fn, task, token, shared_bytes)``, answer ``(task_id, ok, value)``."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)  # a forked OpenMP pool deadlocks; small nets want one thread
    ctx = LOCAL  # a forked worker starts with a copy of the driver's envs
    shared_cache: dict = {}
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message is None:
            return
        task_id, fn, task, token, blob = message
        try:
            if token not in shared_cache:
                if blob is None:
                    raise RuntimeError("shared input missing in worker")
                shared_cache.clear()  # one call at a time: keep only the current input
                shared_cache[token] = pickle.loads(blob)
            result = fn(ctx, task, shared_cache[token])
            reply = (task_id, True, result)
        except BaseException as exc:  # noqa: BLE001 - sent to the driver, which raises it
            reply = (task_id, False, _portable(exc))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _portable(exc: BaseException):
    """The exception itself if it pickles (UserError keeps its type), else a RuntimeError."""
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc))
        exc.worker_traceback = text
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"in a worker: {type(exc).__name__}: {exc}\n{text}")


@dataclass
class _Worker:
    process: Any
    conn: Any
    tokens: set = field(default_factory=set)
    task: Any = None  # (task_id, task) in flight


class ProcessBackend:
    """Long-lived local worker processes, one pipe each (fork on Linux, spawn elsewhere)."""

    _ids = count()

    def __init__(self, workers: int, max_retries: int = 2):
        import multiprocessing as mp

        self.workers, self.max_retries = int(workers), int(max_retries)
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        self._mp = mp.get_context(method)
        self._pool: list[_Worker] = []

    def _start(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        p = self._mp.Process(target=_worker_main, args=(child,), daemon=True)
        p.start()
        child.close()
        return _Worker(p, parent)

    def _ensure(self) -> None:
        # a dead worker still holding a task stays until its loss is handled (retry)
        self._pool = [w for w in self._pool if w.process.is_alive() or w.task is not None]
        while len(self._pool) < self.workers:
            self._pool.append(self._start())

    def imap(self, fn, tasks, shared=None):
        from multiprocessing.connection import wait

        token = next(self._ids)
        blob = pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)
        feed = TaskFeed(tasks, self.max_retries)
        self._ensure()
        try:
            while True:
                for w in self._pool:  # give every idle worker a task
                    if w.task is not None or (item := feed.next()) is None:
                        continue
                    w.task = item
                    send_blob = None if token in w.tokens else blob
                    w.conn.send((item[0], fn, item[1], token, send_blob))
                    w.tokens.add(token)
                busy = [w for w in self._pool if w.task is not None]
                if not busy:
                    return
                wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for w in busy:
                    try:
                        readable = w.conn.poll()
                    except (EOFError, OSError):
                        readable = False
                    if readable:
                        try:
                            task_id, ok, value = w.conn.recv()
                        except (EOFError, OSError):  # died: the pipe closed without an answer
                            self._lost(w, feed)
                            continue
                        _, task = w.task
                        w.task = None
                        if not ok:
                            raise value
                        yield task, value
                    elif not w.process.is_alive():
                        self._lost(w, feed)
                self._ensure()
        except BaseException:
            self.close()  # a failed or interrupted call leaves no worker behind
            raise

    def _lost(self, w: _Worker, feed: TaskFeed) -> None:
        item, w.task = w.task, None
        w.conn.close()
        feed.lost(item, f"a worker process, exit code {w.process.exitcode}")

    def close(self) -> None:
        for w in self._pool:
            try:
                w.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for w in self._pool:
            w.process.join(timeout=2)
            if w.process.is_alive():
                w.process.terminate()
                w.process.join(timeout=2)
            w.conn.close()
        self._pool = []


BACKENDS: dict[str, type] = {"serial": SerialBackend, "processes": ProcessBackend}
#: backends in modules of their own, imported on first use (they import optional extras)
BACKEND_MODULES: dict[str, str] = {"ray": "distributed_grid2op.execution_ray"}


def register_backend(name: str, cls: type) -> None:
    """Make ``Executor(backend=name)`` use ``cls(workers, max_retries=...)``."""
    BACKENDS[name] = cls


def executor(workers: int = 1, backend: str | None = None, **kwargs) -> Executor:
    """An `Executor` (see its arguments); the one way the package gets workers."""
    return Executor(workers, backend, **kwargs)


def executor_for(workers: int | None = 1, ray: str | None = None, n_tasks: int | None = None):
    """The executor of the ``--workers`` / ``--ray`` settings (what
    `distributed_grid2op.cli.executor_from_args` builds).

    ``workers=None``: the available CPUs (with Ray on a cluster: the cluster's), capped by
    ``n_tasks``. ``ray``: None (local processes), ``"local"`` (start a local Ray sized by
    ``workers``), ``"auto"`` or ``HOST:PORT`` (join that cluster).
    """
    if ray is None:
        return Executor(workers if workers is not None else default_workers(n_tasks))
    import importlib

    plugin = importlib.import_module(BACKEND_MODULES["ray"])
    local = ray == "local"
    if workers is None and local:
        workers = default_workers(n_tasks)
    plugin.init_ray(None if local else ray, workers)
    if workers is None:  # a cluster: its CPUs, capped by the tasks
        cpus = max(1, plugin.cluster_cpus())
        workers = cpus if n_tasks is None else max(1, min(cpus, int(n_tasks)))
    return Executor(workers, "ray")


def _apply_chunk(ctx, chunk: list, fn) -> list:
    return [fn(item) for item in chunk]


def as_mapper(executor: Executor, tasks_per_worker: int = 4):
    """A ``map``-like ``mapper(fn, items)`` running on ``executor`` (for code that must not
    import the execution layer, e.g. `clustering.mutual_info`): ``fn`` (picklable, possibly
    holding large arrays) crosses to each worker once, the items go in about
    ``tasks_per_worker`` chunks per worker; results in the order of ``items``."""

    def mapper(fn, items):
        items = list(items)
        size = max(1, -(-len(items) // (tasks_per_worker * executor.workers)))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        for part in executor.map(_apply_chunk, chunks, shared=fn):
            yield from part

    return mapper
