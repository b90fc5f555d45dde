"""The execution layer: one executor for every stage, identical results on every backend and
worker count, shared inputs sent once per worker, lost workers retried, no stray processes;
and the package's structure: one place creates worker processes, no import cycle, no global
side effects from library constructors."""

from __future__ import annotations

import ast
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import Executor, WorkerLost, as_mapper

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clustering", "distributed_grid2op", "patches", "experiments")
CASE5 = EnvSpec("rte_case5_example")


def _episode(ctx, task, shared):
    """A seeded random-topology episode of case5 (20 steps): its max rho per step."""
    env = ctx.env(CASE5)
    rng = np.random.default_rng(task)
    env.seed(int(task))
    obs = env.reset(options={"time serie id": int(task) % 3})
    out = []
    for _ in range(20):
        act = (
            env.action_space({"set_line_status": []}) if rng.random() < 0.5 else env.action_space()
        )
        obs, _, done, _ = env.step(act)
        out.append(float(obs.rho.max()) if not done else np.nan)
        if done:
            break
    return task, np.asarray(out) * shared["scale"], os.getpid()


def test_identical_results_serial_and_processes():
    tasks = list(range(6))
    with Executor(1) as serial, Executor(2) as procs:
        a = serial.map(_episode, tasks, shared={"scale": 2.0})
        b = procs.map(_episode, tasks, shared={"scale": 2.0})
        assert procs.backend_name == "processes" and serial.backend_name == "serial"
    for (ta, xa, _), (tb, xb, _) in zip(a, b):
        assert ta == tb
        np.testing.assert_array_equal(xa, xb)
    assert {p for *_, p in a} == {os.getpid()}
    assert os.getpid() not in {p for *_, p in b}


class _Counted:
    """Records every unpickling in a file: shows how often a shared input crossed."""

    def __init__(self, log):
        self.log = str(log)

    def __setstate__(self, state):
        self.__dict__.update(state)
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()}\n")


def _pid(ctx, task, shared):
    return os.getpid()


def test_shared_input_crosses_once_per_worker_per_call(tmp_path):
    log = tmp_path / "unpickled.txt"
    with Executor(2) as ex:
        pids = ex.map(_pid, range(12), shared=_Counted(log))
        first = log.read_text().split()
        assert sorted(map(int, first)) == sorted(set(pids)) and len(first) <= 2
        ex.map(_pid, range(12), shared=_Counted(log))  # a new call: once more per worker
        assert len(log.read_text().split()) <= 4


def _dies_once(ctx, task, shared):
    marker = Path(shared) / f"died-{task}"
    if task % 3 == 1 and not marker.exists():
        marker.touch()
        os._exit(3)  # the worker process dies mid-task
    return task * task


def _always_dies(ctx, task, shared):
    os._exit(4)


def test_lost_workers_are_retried_then_refused(tmp_path):
    with Executor(2, max_retries=2) as ex:
        assert ex.map(_dies_once, range(8), shared=str(tmp_path)) == [t * t for t in range(8)]
        with pytest.raises(WorkerLost, match="rerun"):
            ex.map(_always_dies, [1], shared=None)
        assert not ex._backend._pool  # the failed call left no worker behind


def _user_mistake(ctx, task, shared):
    raise UserError(f"bad task {task}")


def test_worker_errors_keep_their_type():
    with Executor(2) as ex:
        with pytest.raises(UserError, match="bad task"):
            ex.map(_user_mistake, [1, 2])


def _square(ctx, task, shared):
    return task * task


def test_tasks_are_consumed_lazily():
    """A generator may plan the next task from the results already received."""
    with Executor(2) as ex:
        seen: list[int] = []

        def plan():
            for t in range(6):
                yield t
                assert len(seen) >= t - 2  # at most one task per worker ahead

        for _, r in ex.imap(_square, plan()):
            seen.append(r)
    assert sorted(seen) == [t * t for t in range(6)]


def test_mapper_runs_a_picklable_function_on_the_executor():
    fn = _Scale(3)
    with Executor(2) as ex:
        assert list(as_mapper(ex)(fn, range(10))) == [3 * i for i in range(10)]


class _Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return self.k * x


def test_bad_executor_arguments():
    with pytest.raises(UserError, match="workers"):
        Executor(0)
    with pytest.raises(UserError, match="backend"):
        Executor(2, "threads")


# ---- structure --------------------------------------------------------------------------------
def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_one_place_creates_worker_processes():
    allowed = {"distributed_grid2op/execution.py", "distributed_grid2op/execution_ray.py",
               "patches/__init__.py"}  # patches: hands grid2op's Runner a fork context, starts none  # fmt: skip
    needles = ("ProcessPoolExecutor", "multiprocessing", "get_context(", ".Process(", "os.fork")
    offenders = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if rel not in allowed and any(n in text for n in needles):
            offenders.append(rel)
    assert offenders == []


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def test_no_import_cycle_inside_the_packages():
    """Every import (module level or inside a function) between our modules: no cycle."""
    import networkx as nx

    modules = {_module_name(p): p for p in _sources()}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1]
                        + ([base] if base else [])
                    )
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for t in targets:
                if t in modules and t != name and not name.startswith(t + "."):
                    graph.add_edge(name, t)
    cycles = list(nx.simple_cycles(graph))
    assert cycles == []


def test_constructors_have_no_global_side_effects(case14_env):
    import torch

    from distributed_grid2op.agents import HierarchicalAgent

    torch.set_num_threads(2)
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking it is left alone
    agent = HierarchicalAgent(case14_env, seed=3)
    assert torch.get_num_threads() == 2
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002
    assert not hasattr(case14_env, "_decomp_metadata")
    assert pickle.loads(pickle.dumps(CASE5)) == CASE5
    assert agent.env_meta["thermal_limit"] is not None
