"""Faults: every bad input is one ``error:`` line (exit 2), a killed run resumes to the same
artifacts as an uninterrupted one, and two identical runs write identical files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reproducible import assert_same_artifacts, files_of, temp_files

from distributed_grid2op import cli
from distributed_grid2op.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def bundled_env_dir(name: str = "l2rpn_case14_sandbox") -> Path:
    import grid2op

    return Path(grid2op.__file__).parent / "data" / name


def copy_env(tmp_path: Path, name: str = "env") -> Path:
    dst = tmp_path / name
    shutil.copytree(bundled_env_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def assert_one_error(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_cli(module: str, *args, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [PY, "-m", module, *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip


def run_main(main, argv, capsys) -> tuple[int, str]:
    """``cli.run(main, argv)``; argparse's own errors exit through SystemExit."""
    try:
        code = cli.run(main, [str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


# ---------------------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def corrupted_envs(tmp_path_factory) -> dict[str, Path]:
    """Copies of the bundled sandbox: one with an invalid .bz2, one with a non-numeric value."""
    import bz2

    root = tmp_path_factory.mktemp("corrupted")
    bad_bz2 = copy_env(root, "bad_bz2")
    (bad_bz2 / "chronics" / "0000" / "load_p.csv.bz2").write_bytes(b"not bzip2 at all\n")
    bad_value = copy_env(root, "bad_value")
    path = bad_value / "chronics" / "0000" / "load_q.csv.bz2"
    lines = bz2.decompress(path.read_bytes()).decode().splitlines()
    cells = lines[3].split(";")
    cells[1] = "abc"
    lines[3] = ";".join(cells)
    path.write_bytes(bz2.compress(("\n".join(lines) + "\n").encode()))
    return {"bz2": bad_bz2, "value": bad_value}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny training run (2 episodes, a checkpoint every episode)."""
    from distributed_grid2op.main import main

    out = tmp_path_factory.mktemp("trained") / "run"
    argv = ["--episodes", "2", "--checkpoint-every", "1", "--out", out, "--no-progress"]
    assert cli.run(main, [str(a) for a in argv]) == 0
    return out


# ---------------------------------------------------------------------------- one-line errors
@pytest.mark.slow
@pytest.mark.parametrize("kind,needle", [("bz2", "not a valid .bz2"), ("value", "'abc'")])
def test_corrupted_chronic_file_is_one_error(corrupted_envs, tmp_path, kind, needle):
    env = corrupted_envs[kind]
    bad = "load_p.csv.bz2" if kind == "bz2" else "load_q.csv.bz2"
    commands = [
        ("clustering.power_grid", "--env", env, "--episodes", "2", "--samples", "20",
         "--permutations", "1", "--workers", "1", "--out", tmp_path / "pg", "--no-progress"),
        ("distributed_grid2op.scenarios", "--source", env, "--n", "2", "--steps", "20",
         "--out", tmp_path / "sc", "--no-validate", "--quiet"),
    ]  # fmt: skip
    if kind == "bz2":  # the first chronic: training reads it whatever the split
        commands.append(("distributed_grid2op.main", "--env", env, "--episodes", "1",
                         "--out", tmp_path / "tr", "--no-progress"))  # fmt: skip
    for module, *args in commands:
        proc = run_cli(module, *args)
        assert_one_error(proc.returncode, proc.stderr, bad, needle)


def test_chronic_file_problem_names_the_row(corrupted_envs):
    from distributed_grid2op.chronics import find_bad_chronic_file

    path, problem = find_bad_chronic_file(corrupted_envs["value"])
    assert path.name == "load_q.csv.bz2" and "'abc'" in problem and "row 4" in problem
    assert find_bad_chronic_file(bundled_env_dir()) is None


def test_env_path_that_is_a_file(tmp_path):
    from distributed_grid2op.envs import resolve_env

    f = tmp_path / "grid.json"
    f.write_text("{}")
    with pytest.raises(UserError, match="is a file, not a grid2op env folder"):
        resolve_env(f)


def test_non_utf8_inputs(tmp_path, capsys):
    from distributed_grid2op.agents.hierarchical import read_metadata
    from distributed_grid2op.factorization_file import load_factorization
    from experiments.reproduce import main as reproduce_main
    from experiments.runs import load_config

    bad = tmp_path / "bad"
    bad.write_bytes(b'{"format": 1, "env": "\xff\xfe"}')
    with pytest.raises(UserError, match="not UTF-8"):
        load_factorization(bad)
    with pytest.raises(UserError, match="not UTF-8"):
        load_config("training", "quick", bad)
    (tmp_path / "agent").mkdir()
    (tmp_path / "agent" / "agent.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(UserError):
        read_metadata(tmp_path / "agent")
    code, err = run_main(reproduce_main, ["training", "--config", bad, "--out", tmp_path], capsys)
    assert_one_error(code, err, "not UTF-8", str(bad))


def test_factorization_cli_not_utf8(tmp_path, capsys):
    from distributed_grid2op.main import main

    bad = tmp_path / "f.json"
    bad.write_bytes(b"\xff\xff\xff")
    code, err = run_main(main, ["--factorization", bad, "--out", tmp_path / "o"], capsys)
    assert_one_error(code, err, "not UTF-8", str(bad))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupted_weights_are_one_error(trained, tmp_path, capsys, damage):
    from distributed_grid2op.evaluate import main as evaluate_main

    agent = tmp_path / "agent"
    shutil.copytree(trained / "final", agent)
    weights = agent / "weights.pt"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(300),
                         "empty": b""}[damage])  # fmt: skip
    argv = ["--agents", agent, "--baselines", "do-nothing", "--episodes", "1", "--max-steps", "5",
            "--out", tmp_path / "ev", "--no-progress"]  # fmt: skip
    code, err = run_main(evaluate_main, argv, capsys)
    assert_one_error(code, err, "weights.pt")


@pytest.mark.parametrize(
    "experiment,text,needle",
    [
        ("training", "seed = 1\n[train]\nepisodes = 1\n", "missing key(s) evaluate, variant"),
        ("training", "seed = 1\nbogus = 2\n", "unknown key(s) bogus"),
        ("factorization", "seed = 1\n[pipeline]\nepisodes = 1\n[[variant]]\nname = 'a'\n"
         "colour = 'red'\n", "unknown option(s) colour"),
        ("factorization", "seed = 1\n[pipeline]\nepisodes = 'x'\n[[variant]]\nname = 'a'\n",
         "episodes"),
        ("training", "seed = 1\n[scenarios]\nn = 2\nfoo = 1\n[train]\n[[variant]]\nname='a'\n"
         "[[evaluate]]\nname='b'\n", "[scenarios]: unknown option(s) foo"),
        ("training", "seed = 1\n[train]\n[[variant]]\nname='a'\nwat = 1\n[[evaluate]]\nname='b'\n",
         "wat"),
        ("training", "seed = 1\n[train]\n[[variant]]\nname='a'\n[[evaluate]]\nname='b'\nzzz=1\n",
         "zzz"),
        ("synthetic", "seed = 1\nk = 0.05\nn_permutations = 1\nquantiles = [0.7]\n"
         "figure_quantiles = [0.7]\n[[mdp]]\nname = 'x'\nkind = 'copy'\n", "missing key(s)"),
        ("synthetic", "seed = 'a'\nk = 0.05\nn_permutations = 1\nquantiles = [0.7]\n"
         "figure_quantiles = [0.7]\n[[mdp]]\nname = 'x'\nkind = 'odd'\n", "seed must be"),
        ("training", "seed = 1\ntrain = 3\nvariant = 1\nevaluate = 2\n", "train must be a table"),
    ],
)  # fmt: skip
def test_config_schema(tmp_path, capsys, experiment, text, needle):
    from experiments.reproduce import main as reproduce_main

    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    code, err = run_main(reproduce_main, [experiment, "--config", cfg, "--out", tmp_path], capsys)
    assert_one_error(code, err, needle)
    assert not (tmp_path / experiment).exists()  # refused before anything ran


def test_shipped_configs_pass_the_schema():
    from experiments.runs import EXPERIMENTS, PROFILES, load_config

    for experiment in EXPERIMENTS:
        for profile in PROFILES:
            load_config(experiment, profile)


def test_plot_output_below_a_file(tmp_path, capsys):
    from distributed_grid2op.plots import main as plots_main

    csv = tmp_path / "train_log.csv"
    csv.write_text("episode,survived_steps,max_steps,total_reward\n0,5,10,5.0\n1,6,10,6.0\n")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run_main(plots_main, ["learning", csv, "--output", blocker / "sub" / "x.png"],
                         capsys)  # fmt: skip
    assert_one_error(code, err, "is a file, not a folder", str(blocker))


def test_danger_out_of_range(tmp_path, capsys):
    from distributed_grid2op.main import main

    for value in ("5", "0", "-1", "nan", "x"):
        code, err = run_main(main, ["--danger", value, "--out", tmp_path / "o"], capsys)
        assert_one_error(code, err, "--danger")


def test_factorization_of_another_env_warns(tmp_path):
    from distributed_grid2op.envs import make_env
    from distributed_grid2op.factorization_file import load_factorization

    doc = json.loads(
        (ROOT / "distributed_grid2op/data/thesis_case14_factorization.json").read_text()
    )
    doc["env"] = "rte_case14_realistic"
    path = tmp_path / "f.json"
    path.write_text(json.dumps(doc))
    env = make_env("l2rpn_case14_sandbox")
    with pytest.warns(UserWarning, match="rte_case14_realistic.*l2rpn_case14_sandbox"):
        load_factorization(path, env=env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_factorization(None, env=env)  # the thesis file names this env: no warning
    env.close()


@pytest.mark.slow
def test_resume_refuses_other_factorization(trained, tmp_path, capsys):
    from distributed_grid2op.main import main

    out = tmp_path / "run"
    shutil.copytree(trained, out)
    base = ["--episodes", "3", "--checkpoint-every", "1", "--out", out, "--resume"]
    code, err = run_main(main, [*base, "--centralized", "--no-progress"], capsys)
    assert_one_error(code, err, "--resume", "centralized")
    fact = tmp_path / "f.json"
    doc = json.loads(
        (ROOT / "distributed_grid2op/data/thesis_case14_factorization.json").read_text()
    )
    doc["clusters"] = [{"substations": list(range(14)), "lines": list(range(20))}]
    fact.write_text(json.dumps(doc))
    code, err = run_main(main, [*base, "--factorization", fact, "--no-progress"], capsys)
    assert_one_error(code, err, "--resume", "factorization")
    # options that do not change results may differ
    code, err = run_main(main, [*base, "--workers", "2", "--no-progress"], capsys)
    assert code == 0, err


# ---------------------------------------------------------------------------- property-based
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 40) | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip
factorization_docs = st.fixed_dictionaries(
    {"format": st.sampled_from([1, 2, "1", None]),
     "clusters": st.lists(st.fixed_dictionaries(
         {"substations": st.lists(st.integers(-1, 15), max_size=8) | json_values,
          "lines": st.lists(st.integers(-1, 21), max_size=8) | json_values}) | json_values,
         max_size=3) | json_values},
    optional={"env": json_values, "method": json_values, "params": json_values},
)  # fmt: skip


class FakeEnv:
    n_sub, n_line, n_gen, n_storage, env_name = 14, 20, 6, 0, "l2rpn_case14_sandbox"

    def get_path_env(self):
        return "/nonexistent/l2rpn_case14_sandbox"


@FAST
@given(doc=factorization_docs | json_values, raw=st.binary(max_size=40), as_bytes=st.booleans())
def test_property_factorization_file(tmp_path, doc, raw, as_bytes):
    from distributed_grid2op.factorization_file import load_factorization

    path = tmp_path / "f.json"
    path.write_bytes(raw if as_bytes else json.dumps(doc).encode())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_factorization(path, env=FakeEnv())
    except UserError:
        pass


@FAST
@given(meta=json_values | st.fixed_dictionaries({"format": st.sampled_from([1, 2, 3])},
                                               optional={"env": json_values}),
       raw=st.binary(max_size=30), as_bytes=st.booleans())  # fmt: skip
def test_property_agent_metadata(tmp_path, meta, raw, as_bytes):
    from distributed_grid2op.agents.hierarchical import read_metadata

    (tmp_path / "agent.json").write_bytes(raw if as_bytes else json.dumps(meta).encode())
    try:
        read_metadata(tmp_path)
    except UserError:
        pass


def _config_classes():
    from distributed_grid2op.evaluation import EvaluateConfig

    try:
        from distributed_grid2op.main import TrainConfig
    except ImportError:
        from distributed_grid2op.training import TrainConfig
    return TrainConfig, EvaluateConfig


config_keys = st.sampled_from(["episodes", "learning_rate", "seed", "danger", "top_k", "workers", "env", "out",
                               "thermal_limit_scale", "scenarios", "agents", "max_steps",
                               "checkpoint_every", "centralized", "bogus", "baselines"])  # fmt: skip


@FAST
@given(mapping=st.dictionaries(config_keys, json_values, max_size=5), other=json_values)
def test_property_config_objects(mapping, other):
    train_config, evaluate_config = _config_classes()
    for cls, value in ((train_config, mapping), (evaluate_config, mapping),
                       (evaluate_config, other)):  # fmt: skip
        try:
            cls.from_mapping(value, source="t")
        except UserError:
            pass


toml_scalars = st.integers(-3, 5) | st.text(max_size=4) | st.booleans() | st.floats(0, 2)


@FAST
@given(
    experiment=st.sampled_from(["synthetic", "factorization", "training"]),
    top=st.dictionaries(st.sampled_from(["seed", "k", "train", "pipeline", "variant", "mdp",
                                         "evaluate", "env", "scenarios", "quantiles", "x"]),
                        toml_scalars | st.dictionaries(config_keys, toml_scalars, max_size=3)
                        | st.lists(st.dictionaries(st.sampled_from(["name", "kind", "episodes",
                                                                    "steps", "n"]),
                                                   toml_scalars, max_size=3), max_size=2),
                        max_size=6),
)  # fmt: skip
def test_property_experiment_configs(experiment, top):
    from experiments.runs import validate_config

    try:
        validate_config(experiment, top, "t.toml")
    except UserError:
        pass


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(st.one_of(st.integers(-2, 5), st.text(max_size=3), st.none()),
                              min_size=4, max_size=4), max_size=4),
       header=st.lists(st.sampled_from(["run", "episode", "step", "rho_max", "survived_steps",
                                        "max_steps", "total_reward", "x"]),
                       min_size=4, max_size=4),
       kind=st.sampled_from(["survival", "rho", "actions", "learning"]))  # fmt: skip
def test_property_step_metrics_csv(tmp_path, capsys, rows, header, kind):
    from distributed_grid2op.plots import main as plots_main

    path = tmp_path / "step_metrics.csv"
    path.write_text("\n".join([",".join(header)] + [",".join("" if v is None else str(v)
                                                              for v in r) for r in rows]))  # fmt: skip
    code, err = run_main(plots_main, [kind, path, "--output", tmp_path / "p.png"], capsys)
    assert code in (0, 2) and "Traceback" not in err


@FAST
@given(doc=json_values | st.fixed_dictionaries({"format": st.sampled_from([1, 2]),
                                               "actions": json_values, "grid": json_values}),
       raw=st.binary(max_size=30), as_bytes=st.booleans())  # fmt: skip
def test_property_action_file(tmp_path, doc, raw, as_bytes):
    from distributed_grid2op.actions.file import load_action_file

    path = tmp_path / "actions.json"
    path.write_bytes(raw if as_bytes else json.dumps(doc).encode())
    try:
        load_action_file(path)
    except UserError:
        pass


@settings(max_examples=80, deadline=None)
@given(text=st.text(max_size=8) | st.sampled_from(["nan", "inf", "-inf", "1e309", "0", "-0", "1"]))
def test_property_numeric_options(text):
    import argparse

    for parse in (cli.positive_int, cli.positive_float, cli.unit_float, cli.danger_threshold):
        try:
            parse(text)
        except (argparse.ArgumentTypeError, ValueError):
            pass


# ---------------------------------------------------------------------------- kill and resume
def _tmp_files(folder: Path) -> list[Path]:
    return temp_files(folder)


def _kill_when(module: str, args: list, ready, timeout: float = 180) -> None:
    """Start ``python -m module args`` in a new process group, SIGKILL the whole group once
    ``ready()`` is true, and check that no process of the group is left."""
    import signal
    import time

    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    cmd = [PY, "-m", module, *map(str, args)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"{module} ended (rc {proc.returncode}) before the kill"
            assert time.monotonic() < deadline, f"{module}: kill point not reached"
            time.sleep(0.02)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    for _ in range(100):  # orphaned workers die with the group; give init time to reap them
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"{module}: a process of the killed group is still alive")


def _visible(folder: Path, pattern: str) -> list[Path]:
    """Finished files or folders (temp names start with a dot)."""
    return [p for p in folder.glob(pattern) if not p.name.startswith(".")]


@pytest.mark.slow
def test_training_killed_then_resumed_matches_uninterrupted(tmp_path):
    args = ["--episodes", "6", "--checkpoint-every", "2", "--no-progress", "--workers", "1"]
    full = tmp_path / "full"
    assert run_cli("distributed_grid2op.main", *args, "--out", full).returncode == 0
    out = tmp_path / "killed"
    _kill_when("distributed_grid2op.main", [*args, "--out", out],
               lambda: (out / "checkpoints" / "ep000004" / "trainer.json").is_file())  # fmt: skip
    done = run_cli("distributed_grid2op.main", *args, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert not _tmp_files(out)
    for name in ("train_log.csv", "final/weights.pt", "final/agent.json"):
        assert (out / name).read_bytes() == (full / name).read_bytes(), name


@pytest.mark.slow
def test_power_grid_killed_then_resumed_matches_uninterrupted(tmp_path):
    args = ["--env", "rte_case5_example", "--episodes", "20", "--samples", "300",
            "--permutations", "1", "--workers", "2", "--no-progress"]  # fmt: skip
    full, out = tmp_path / "full", tmp_path / "killed"
    proc = run_cli("clustering.power_grid", *args, "--out", full)
    assert proc.returncode == 0, proc.stderr
    assert len(_visible(full / "shards", "*.npz")) > 1  # the kill lands mid-collection
    _kill_when(
        "clustering.power_grid",
        [*args, "--out", out],
        lambda: bool(_visible(out / "shards", "*.npz")),
    )
    assert not (out / "factorization.json").exists()
    done = run_cli("clustering.power_grid", *args, "--out", out, "--resume")
    assert done.returncode == 0, done.stderr
    assert not _tmp_files(out)
    names = assert_same_artifacts(full, out)  # same files (no duplicate shard), same content
    assert {"factorization.json", "mi.npy", "unbiased_mi.npy"} <= set(names)


@pytest.mark.slow
def test_scenarios_killed_then_rerun_matches_uninterrupted(tmp_path):
    args = ["--source", "rte_case5_example", "--n", "8", "--steps", "288", "--workers", "2",
            "--no-validate", "--quiet"]  # fmt: skip
    full, out = tmp_path / "full", tmp_path / "killed"
    proc = run_cli("distributed_grid2op.scenarios", *args, "--out", full)
    assert proc.returncode == 0, proc.stderr
    _kill_when(
        "distributed_grid2op.scenarios",
        [*args, "--out", out],
        lambda: bool(_visible(out / "chronics", "*/check.json")),
    )
    assert len(_visible(out / "chronics", "*")) < 8
    done = run_cli("distributed_grid2op.scenarios", *args, "--out", out)
    assert done.returncode == 0, done.stderr
    assert not _tmp_files(out)
    names = files_of(full)
    assert names == files_of(out)
    assert_same_artifacts(full, out, [n for n in names if n != "generation.json"])
    assert "splits.json" in names
    # generation.json records the run's history (by design, tested in test_scenarios): how
    # many scenarios this run wrote and how many it kept; everything else is the same
    docs = [json.loads((d / "generation.json").read_text()) for d in (full, out)]
    history = [(d["scenarios"].pop("written_this_run"),
                d["scenarios"].pop("kept_from_earlier_runs")) for d in docs]  # fmt: skip
    assert history[0] == (8, 0) and history[1][0] + history[1][1] == 8 and history[1][1] >= 1
    assert json.dumps(docs[0]) == json.dumps(docs[1])
    assert len(_visible(out / "chronics", "*")) == 8


@pytest.mark.slow
def test_evaluate_killed_then_rerun_matches_uninterrupted(tmp_path):
    args = ["--env", "rte_case5_example", "--baselines", "do-nothing,reconnect", "--episodes",
            "4", "--max-steps", "200", "--workers", "2", "--no-progress"]  # fmt: skip
    full, out = tmp_path / "full", tmp_path / "killed"
    proc = run_cli("distributed_grid2op.evaluate", *args, "--out", full)
    assert proc.returncode == 0, proc.stderr
    _kill_when(
        "distributed_grid2op.evaluate",
        [*args, "--out", out],
        lambda: bool(_visible(out / "episodes", "*/*.npz")),
    )
    assert len(_visible(out / "episodes", "*/*.npz")) < 8
    done = run_cli("distributed_grid2op.evaluate", *args, "--out", out)
    assert done.returncode == 0, done.stderr
    assert not _tmp_files(out)
    names = assert_same_artifacts(full, out)
    assert sum(n.endswith(".npz") for n in names) == 8
    assert {"step_metrics.csv", "episode_summary.csv", "run_summary.csv"} <= set(names)
