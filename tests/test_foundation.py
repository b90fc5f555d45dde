"""Shared helpers: factorization file loader, splits, atomic IO, CLI convention, grid facts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distributed_grid2op import grid
from distributed_grid2op.cli import ArgumentParser, run
from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import load_factorization, parse_factorization
from distributed_grid2op.io import atomic_path, ensure_writable_dir, write_json
from distributed_grid2op.seeding import child_seeds, seed_everything
from distributed_grid2op.splits import draw_splits, split_scenarios, write_splits


def test_thesis_partition_is_total_on_case14(case14_env):
    f = load_factorization(env=case14_env)
    assert [c.substations for c in f.clusters] == [(0, 1, 2, 4), (3, 5, 6, 7, 8, 9, 10, 11, 12, 13)]
    assert f.n_sub == 14 and f.n_line == 20
    assert f.cluster_of_substation()[3] == 1
    assert len(f.centralized().clusters) == 1 and f.centralized().n_line == 20


@pytest.mark.parametrize(
    "clusters, message",
    [
        ([{"substations": [0, 1], "lines": [0]}], "are in no cluster"),
        ([{"substations": list(range(15)), "lines": list(range(20))}], "unknown substations"),
        ([{"substations": [0, 0], "lines": []}], "more than one cluster"),
        ([{"substations": "0", "lines": []}], "list of integers"),
        ([], "non-empty"),
    ],
)
def test_bad_factorization_is_a_user_error(tmp_path, case14_env, clusters, message):
    path = tmp_path / "f.json"
    path.write_text(json.dumps({"format": 1, "clusters": clusters}))
    with pytest.raises(UserError, match=message):
        load_factorization(path, env=case14_env)


def test_malformed_and_missing_factorization_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="malformed JSON"):
        load_factorization(bad)
    with pytest.raises(UserError, match="cannot read"):
        load_factorization(tmp_path / "missing.json")
    with pytest.raises(UserError, match="format"):
        parse_factorization({"format": 2, "clusters": []})


def test_splits_are_disjoint_seeded_and_cover():
    names = [f"{i:04d}" for i in range(50)]
    a = draw_splits(names, seed=1)
    assert a == draw_splits(names, seed=1) and a != draw_splits(names, seed=2)
    parts = [set(a[k]) for k in ("train", "val", "test")]
    assert set.union(*parts) == set(names) and sum(map(len, parts)) == 50
    assert [len(p) for p in parts] == [35, 5, 10]
    with pytest.raises(UserError):
        draw_splits(names, fractions=(0.5, 0.5, 0.5))


def test_split_file_in_env_folder_is_used(tmp_path, case5_env):
    import shutil

    from distributed_grid2op.envs import make_env

    dst = tmp_path / "env"
    shutil.copytree(case5_env.get_path_env(), dst)
    write_splits(dst, [f"{i:02d}" for i in range(20)], fractions=(0.5, 0.25, 0.25), seed=0)
    env = make_env(dst)
    ids = {s: split_scenarios(env, s) for s in ("train", "val", "test")}
    assert sorted(sum(ids.values(), [])) == list(range(20))
    assert [len(v) for v in ids.values()] == [10, 5, 5]
    assert split_scenarios(env, "all") == list(range(20))
    with pytest.raises(UserError, match="unknown split"):
        split_scenarios(env, "holdout")


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": np.int64(1), "b": np.arange(2)})
    assert json.loads(target.read_text()) == {"a": 1, "b": [0, 1]}
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"a": 1, "b": [0, 1]}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_unwritable_dir_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        ensure_writable_dir(blocker / "sub")


def test_cli_run_maps_user_errors_to_exit_2(capsys):
    def main(argv):
        raise UserError("bad thing\nsecond line")

    assert run(main, []) == 2
    err = capsys.readouterr().err
    assert err == "error: bad thing\n"

    parser = ArgumentParser(prog="x")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--n", "abc"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_seeds_are_reproducible():
    a, b = seed_everything(5), seed_everything(5)
    assert a.random() == b.random()
    assert child_seeds(5, 4) == child_seeds(5, 4) != child_seeds(6, 4)
    assert len(set(child_seeds(5, 100))) == 100


def test_grid_facts_case14(case14_env):
    assert grid.controllable_substations(case14_env) == [1, 2, 3, 4, 5, 8, 12]
    counts = [len(grid.unitary_topologies(case14_env, s)) for s in range(14)]
    assert counts == [3, 29, 5, 31, 15, 57, 4, 0, 15, 3, 3, 3, 7, 3]
    g = grid.substation_graph(case14_env)
    assert g.number_of_nodes() == 14 and g.number_of_edges() == 20
    assert set(grid.lines_of_substation(case14_env, 0)) == {0, 1}
    topo = grid.substation_topology(grid.unitary_topologies(case14_env, 1)[0], 1, case14_env)
    assert topo.shape == (6,) and set(topo) <= {1, 2}


def test_reconnect_action_reconnects_a_line(case5_env):
    env = case5_env
    obs = env.reset(options={"time serie id": 0})
    assert grid.reconnect_action(env.action_space, obs) is None
    obs, _, done, _ = env.step(env.action_space({"set_line_status": [(5, -1)]}))
    assert not done and not obs.line_status[5]
    assert list(grid.reconnectable_lines(obs)) == [5]
    obs, _, done, _ = env.step(grid.reconnect_action(env.action_space, obs))
    assert not done and obs.line_status.all()


def test_atomic_writes_are_world_readable(tmp_path):
    path = write_json(tmp_path / "x.json", {})
    assert path.stat().st_mode & 0o777 == 0o644
