"""The Ray backend: same results as serial and processes, shared inputs, lost actors, a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import ray

from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import Executor, WorkerLost
from distributed_grid2op.execution_ray import init_ray

SPEC = EnvSpec("l2rpn_case14_sandbox")
# the workers cannot import this test module (it is not a package): send its functions by value
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray with 2 CPUs for the module (the cluster test, last, replaces it)."""
    init_ray(None, 2)
    yield
    ray.shutdown()


@pytest.fixture
def ray2(local_ray):
    if not ray.is_initialized():  # after the cluster test in the same process
        init_ray(None, 2)
    return ray


# ---- task functions (module-level: they travel to the workers) --------------------------------
def play(ctx, task, shared):
    """A short seeded episode of case14: do-nothing or random set-bus actions."""
    seed, policy = task
    env = ctx.env(SPEC)
    env.seed(seed)
    obs = env.reset(options={"time serie id": seed % 3})
    rng = np.random.default_rng(seed)
    rho, rewards, actions = [], [], []
    for _ in range(shared["steps"]):
        if policy == "random" and rng.random() < 0.3:
            sub = int(rng.integers(env.n_sub))
            n = int(env.sub_info[sub])
            act = env.action_space({"set_bus": {"substations_id": [(sub, rng.integers(1, 3, n))]}})
            actions.append(sub)
        else:
            act = env.action_space({})
        obs, reward, done, _ = env.step(act)
        rho.append(obs.rho.copy())
        rewards.append(reward)
        if done:
            break
    return {"rho": np.array(rho), "reward": np.array(rewards), "subs": np.array(actions)}


def weighted(ctx, task, shared):
    """Uses the shared input; reports which copy of it this worker holds."""
    return float(shared["w"][task] * task), os.getpid(), id(shared)


def slow_square(ctx, task, shared):
    time.sleep(0.3)
    return task * task


def torch_threads(ctx, task, shared):
    import torch

    return torch.get_num_threads()


def die(ctx, task, shared):
    os._exit(3)


def bad_input(ctx, task, shared):
    raise UserError(f"task {task} is wrong")


def where(ctx, task, shared):
    """The worker's directory, and whether a path relative to the driver's is readable."""
    try:
        with open(task) as f:
            seen = f.read()
    except OSError:
        seen = None
    return os.getcwd(), seen, ray.get_runtime_context().get_node_id()


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ---- tests --------------------------------------------------------------------------------------
def test_serial_processes_and_ray_give_identical_results(ray2):
    tasks = [(seed, policy) for seed in (0, 1, 2) for policy in ("do-nothing", "random")]
    shared = {"steps": 25}
    with Executor(1) as ex:
        serial = ex.map(play, tasks, shared)
    with Executor(2, "processes") as ex:
        processes = ex.map(play, tasks, shared)
    with Executor(2, "ray") as ex:
        on_ray = ex.map(play, tasks, shared)
        again = dict(ex.imap(play, iter(tasks), shared))  # same actors, envs kept
    assert any(len(r["subs"]) for r in serial)  # the random policy did act
    for s, p, r in zip(serial, processes, on_ray):
        assert _equal(s, p) and _equal(s, r)
    assert all(_equal(again[t], s) for t, s in zip(tasks, serial))


def test_shared_input_reaches_each_actor_once_per_call(ray2):
    shared = {"w": np.arange(10.0) + 1}
    with Executor(2, "ray") as ex:
        out = ex.map(weighted, range(10), shared)
        assert [v for v, _, _ in out] == [float((t + 1) * t) for t in range(10)]
        copies = {}
        for _, pid, ident in out:
            copies.setdefault(pid, set()).add(ident)
        assert all(len(ids) == 1 for ids in copies.values())  # unpickled once per actor
        shared2 = {"w": -np.ones(10)}
        assert [v for v, _, _ in ex.map(weighted, range(3), shared2)] == [0.0, -1.0, -2.0]


def test_actors_run_torch_on_one_thread(ray2):
    with Executor(2, "ray") as ex:
        assert ex.map(torch_threads, range(2)) == [1, 1]


def test_tasks_are_consumed_lazily(ray2):
    handed: list[int] = []

    def source():
        for t in range(6):
            handed.append(t)
            yield t

    with Executor(2, "ray") as ex:
        it = ex.imap(slow_square, source())
        next(it)
        assert len(handed) <= 3  # two in flight, one more after the first result
        rest = dict(it)
    assert len(rest) == 5 and len(handed) == 6


def test_a_killed_actor_is_replaced_and_the_call_completes(ray2):
    tasks = list(range(8))
    with Executor(2, "ray", max_retries=2) as ex:
        results = {}
        for i, (task, value) in enumerate(ex.imap(slow_square, tasks)):
            results[task] = value
            if i == 0:
                ray.kill(ex._backend.actors()[0])
        assert results == {t: t * t for t in tasks}
        assert ex.map(slow_square, [3, 4]) == [9, 16]  # the executor keeps working


def test_a_task_that_keeps_killing_its_worker_raises_worker_lost(ray2):
    with Executor(1, "ray", max_retries=1) as ex, pytest.raises(WorkerLost, match="2 times"):
        ex.map(die, [0])


def test_task_errors_keep_their_type(ray2):
    with Executor(2, "ray") as ex, pytest.raises(UserError, match=r"task [12] is wrong"):
        ex.map(bad_input, [1, 2])


def test_cli_without_ray_is_one_error_line(tmp_path):
    (tmp_path / "ray.py").write_text("raise ImportError('No module named ray')\n")
    script = textwrap.dedent(
        """
        import sys
        from distributed_grid2op import cli

        def main(argv):
            p = cli.ArgumentParser(prog="probe")
            cli.add_executor_arguments(p, default_workers=None)
            args = p.parse_args(argv)
            with cli.executor_from_args(args, 4) as ex:
                return 0

        sys.exit(cli.run(main, ["--ray"]))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.getcwd()]))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: --ray needs Ray: pip install '.[ray]'"


# ---- every stage: the same files on local processes and on Ray -----------------------------------
def _files(folder) -> dict:
    """Relative path -> bytes of every file under ``folder`` (hidden files excluded)."""
    from pathlib import Path

    root = Path(folder)
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def test_collection_and_factorization_are_identical_on_ray(ray2, tmp_path):
    from clustering.power_grid.pipeline import PipelineConfig, run

    def config(out):
        return PipelineConfig(env="rte_case5_example", out=tmp_path / out, n_episodes=12,
                              n_samples=200, n_permutations=1, seed=3, compare_terminal=False,
                              progress=False)  # fmt: skip

    with Executor(2) as ex:
        run(config("processes"), executor=ex)
    with Executor(2, "ray") as ex:  # the MI pairs run on the actors too (as_mapper)
        run(config("ray"), executor=ex)
    for name in ("factorization.json", "mi.npy", "shuffled_mi.npy", "unbiased_mi.npy"):
        assert (tmp_path / "processes" / name).read_bytes() == (
            tmp_path / "ray" / name
        ).read_bytes()
    assert _files(tmp_path / "processes" / "shards") == _files(tmp_path / "ray" / "shards")


def test_generated_scenarios_are_identical_on_ray(ray2, tmp_path):
    from distributed_grid2op.scenarios.generator import generate

    kw = dict(n_scenarios=3, n_steps=30, seed=5, validate=False, progress=False)
    with Executor(2) as ex:
        a = generate("l2rpn_case14_sandbox", tmp_path / "processes", executor=ex, **kw)
    with Executor(2, "ray") as ex:
        b = generate("l2rpn_case14_sandbox", tmp_path / "ray", executor=ex, **kw)
    chronics = _files(a / "chronics")
    assert len([n for n in chronics if n.startswith("0002")]) > 1  # every scenario's files
    assert chronics == _files(b / "chronics")


def _train_config(out, **kw):
    from distributed_grid2op.main import TrainConfig

    options = dict(episodes=2, episodes_per_update=2, max_start=540, thermal_limit_scale=0.85,
                   out=str(out), progress=False, workers=2)  # fmt: skip
    return TrainConfig(**{**options, **kw})


def test_training_is_identical_on_ray(ray2, tmp_path):
    from distributed_grid2op.main import train

    with Executor(2) as ex:
        train(_train_config(tmp_path / "processes"), executor=ex)
    with Executor(2, "ray") as ex:
        train(_train_config(tmp_path / "ray"), executor=ex)
    for name in ("train_log.csv", "final/weights.pt"):
        assert (tmp_path / "processes" / name).read_bytes() == (
            tmp_path / "ray" / name
        ).read_bytes()


def test_evaluation_is_identical_on_ray(ray2, tmp_path):
    import pandas as pd

    from distributed_grid2op.evaluation import EvaluateConfig, run_evaluation
    from distributed_grid2op.main import train

    agent = tmp_path / "agent"
    with Executor(1) as ex:  # a tiny trained agent (its quality does not matter here)
        train(_train_config(agent, episodes=1, episodes_per_update=1), executor=ex)

    def config(out):
        return EvaluateConfig(agents=[str(agent)], baselines=["do-nothing", "expert"],
                              thermal_limit_scale=0.85, episodes=2, max_steps=25, seed=1,
                              out=str(tmp_path / out), progress=False)  # fmt: skip

    with Executor(2) as ex:
        a = run_evaluation(config("processes"), executor=ex).steps
    with Executor(2, "ray") as ex:
        b = run_evaluation(config("ray"), executor=ex).steps
    timing = [c for c in a.columns if c.endswith("_ms") or c.endswith("_s") or "time" in c]
    assert set(a["run"]) >= {"do-nothing", "expert"} and len(set(a["run"])) == 3
    pd.testing.assert_frame_equal(a.drop(columns=timing), b.drop(columns=timing))
    steps = [pd.read_csv(tmp_path / d / "step_metrics.csv") for d in ("processes", "ray")]
    pd.testing.assert_frame_equal(*(s.drop(columns=timing) for s in steps))


def test_reproduce_workers_and_ray_reach_every_stage():
    """``python -m experiments.reproduce ... --workers N --ray ADDRESS``: every stage's table
    gets them (and its command accepts them); the config, its hash and folder stay as written."""
    import copy

    from clustering.power_grid.__main__ import build_parser
    from distributed_grid2op.evaluation import EvaluateConfig
    from distributed_grid2op.main import TrainConfig
    from experiments._argv import to_argv
    from experiments.reproduce import stage_workers, with_executor
    from experiments.runs import config_hash, load_config

    fac = load_config("factorization", "quick")
    before = copy.deepcopy(fac)
    new = with_executor("factorization", fac, 3, "auto")
    assert fac == before and config_hash(fac) == config_hash(before)
    for variant in new["variant"]:
        args = build_parser().parse_args(to_argv({**new["pipeline"], **variant, "name": None}))
        assert (args.workers, args.ray) == (3, "auto")
    assert with_executor("factorization", fac, None, None) is fac

    tr = load_config("training", "quick")
    new = with_executor("training", tr, None, "local")  # workers: each stage's own
    assert new["train"] == {**tr["train"], "ray": "local"}
    assert [e["workers"] for e in new["evaluate"]] == [e["workers"] for e in tr["evaluate"]]
    assert new["scenarios"]["ray"] == "local" and "ray" not in new["variant"][0]
    assert stage_workers("training", new) == max(e["workers"] for e in tr["evaluate"])
    config = TrainConfig.from_mapping({**new["env"], **new["train"], "out": "x"})
    assert (config.workers, config.ray) == (tr["train"]["workers"], "local")
    ev = {k: v for k, v in new["evaluate"][0].items() if k not in ("name", "description")}
    assert EvaluateConfig.from_mapping({**ev, "out": "x"}).ray == "local"
    assert with_executor("synthetic", load_config("synthetic", "quick"), 2, "local") == (
        load_config("synthetic", "quick")
    )  # no workers there


def test_two_node_cluster_workers_have_their_own_directory(local_ray, tmp_path, monkeypatch):
    """Last: it replaces the module's local Ray with a two-node cluster on this machine."""
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        monkeypatch.chdir(tmp_path)  # the driver's output folder
        (tmp_path / "driver_only.txt").write_text("driver")
        init_ray(cluster.address)
        assert len(ray.nodes()) == 2
        tasks = [(0, "random"), (1, "do-nothing"), (2, "random")]
        shared = {"steps": 10}
        with Executor(2, "ray") as ex:
            seen = ex.map(where, ["driver_only.txt"] * 4)
            results = ex.map(play, tasks, shared)
        assert len({node for _, _, node in seen}) == 2  # one actor per node
        for cwd, content, _ in seen:
            assert content is None  # the driver's folder is not the workers'
            assert os.path.realpath(cwd) != os.path.realpath(tmp_path)
        with Executor(1) as ex:
            assert all(_equal(a, b) for a, b in zip(ex.map(play, tasks, shared), results))
    finally:
        ray.shutdown()
        cluster.shutdown()
