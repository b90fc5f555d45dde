"""Reduced action sets: candidates, actions.json, reduction CLI, greedy search, safe reconnection."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from distributed_grid2op import grid
from distributed_grid2op.actions import load_action_file, write_action_file
from distributed_grid2op.actions.file import grid_summary
from distributed_grid2op.actions.reduce import (
    line_positions,
    main,
    reduce_actions,
    substation_candidates,
    two_bus_splits,
)
from distributed_grid2op.actions.search import greedy_search, search_order
from distributed_grid2op.cli import run
from distributed_grid2op.errors import UserError
from distributed_grid2op.scoring import simulated_max_rho

SMALL = dict(thermal_limit_scale=0.85, states=3, episodes=2, horizon=60, seed=3, progress=False)


def _without_timings(path) -> str:
    doc = json.loads(open(path, encoding="utf-8").read())
    doc.pop("timings")
    return json.dumps(doc)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "actions.json"
    reduce_actions("l2rpn_case14_sandbox", out, **SMALL)
    return out


def test_candidates_are_valid_grid2op_topologies(case14_env):
    env = case14_env
    subs = grid.controllable_substations(env)
    vectors, counts = substation_candidates(env, subs, max_candidates=2000, seed=0)
    n_full = 0
    for s, vecs in zip(subs, vectors):
        full = {tuple(grid.substation_topology(a, s, env)) for a in grid.unitary_topologies(env, s)}
        n_full += len(full)
        mine = {tuple(int(x) for x in v) for v in vecs}
        assert mine and mine <= full  # a subset of grid2op's valid unitary topologies
        assert len(mine) == len(vecs) == counts[s]["kept"] == counts[s]["valid"]
        for v in vecs:  # no element alone on a bus, a line on each bus, bus-1 first
            assert v[0] == 1 and (v == 1).sum() >= 2 and (v == 2).sum() >= 2
            pos = line_positions(env, s)
            assert set(v[pos].tolist()) == {1, 2}
    assert sum(len(v) for v in vectors) < n_full


def test_sampling_caps_big_substations_without_enumerating():
    pos = np.arange(12)
    a = two_bus_splits(17, pos, max_candidates=50, rng=np.random.default_rng(1))
    b = two_bus_splits(17, pos, max_candidates=50, rng=np.random.default_rng(1))
    assert a.shape == (50, 17) and np.array_equal(a, b)
    big = two_bus_splits(40, np.arange(30), max_candidates=20, rng=np.random.default_rng(0))
    assert big.shape == (20, 40) and len({tuple(r) for r in big}) == 20
    assert (big[:, 0] == 1).all() and ((big == 2).sum(axis=1) >= 2).all()


def test_reduction_is_seeded_and_loads(reference, tmp_path, case14_env):
    again = tmp_path / "again.json"
    reduce_actions("l2rpn_case14_sandbox", again, **SMALL)
    assert _without_timings(again) == _without_timings(reference)
    text = again.read_text(encoding="utf-8")
    start = text.index('"timings"')
    assert text[:start] == reference.read_text(encoding="utf-8")[:start]  # bytes, too
    af = load_action_file(reference, case14_env)
    assert len(af) > 0 and af.scoring["seed"] == 3 and len(af.scoring["states"]) == 3
    assert af.scoring["thermal_limit_scale"] == 0.85
    for s, vec in zip(af.substations, af.set_bus):
        assert len(vec) == case14_env.sub_info[s]
    acts = af.to_grid2op(case14_env.action_space)
    for a, s, vec in zip(acts, af.substations, af.set_bus):
        assert np.array_equal(grid.substation_topology(a, int(s), case14_env), vec)
    assert sum(len(v) for v in af.by_substation().values()) == len(af)


def test_resume_after_partial_run_gives_the_same_file(reference, tmp_path):
    out = tmp_path / "actions.json"
    assert reduce_actions("l2rpn_case14_sandbox", out, stop_after=1, **SMALL) is None
    partial = tmp_path / "actions.json.partial.json"
    assert partial.is_file() and not out.exists()
    assert len(json.loads(partial.read_text())["done"]) == 1
    with pytest.raises(UserError, match="other options"):
        reduce_actions("l2rpn_case14_sandbox", out, resume=True, **{**SMALL, "seed": 4})
    reduce_actions("l2rpn_case14_sandbox", out, resume=True, workers=2, **SMALL)
    assert _without_timings(out) == _without_timings(reference)
    assert not partial.exists()


def test_action_file_round_trip_and_bad_files(tmp_path, case14_env, case5_env):
    env = case14_env
    path = tmp_path / "a.json"
    acts = [{"substation": 1, "set_bus": [1, 1, 2, 1, 2, 2], "score": {"relieved": 1}}]
    write_action_file(path, env_name="x", grid=grid_summary(env), scoring={"seed": 0}, actions=acts)
    af = load_action_file(path, env)
    assert af.substations.tolist() == [1] and af.set_bus[0].tolist() == [1, 1, 2, 1, 2, 2]
    assert af.scores == [{"relieved": 1}] and af.for_substations([1]) == [0]
    with pytest.raises(UserError, match="another grid"):
        load_action_file(path, case5_env)
    good = json.loads(path.read_text())
    bad_docs = {
        "utf8": b"\xff\xfe{",
        "json": b"{not json",
        "top": b"[]",
        "format": json.dumps({**good, "format": 2}).encode(),
        "length": json.dumps({**good, "actions": [{"substation": 1, "set_bus": [1, 2]}]}).encode(),
        "bus": json.dumps(
            {**good, "actions": [{"substation": 1, "set_bus": [1] * 5 + [3]}]}
        ).encode(),
        "sub": json.dumps({**good, "actions": [{"substation": 99, "set_bus": [1]}]}).encode(),
        "grid": json.dumps({**good, "grid": {"n_sub": "14"}}).encode(),
    }
    for key, data in bad_docs.items():
        p = tmp_path / f"bad_{key}.json"
        p.write_bytes(data)
        with pytest.raises(UserError, match=f"bad_{key}.json"):
            load_action_file(p, env)
    with pytest.raises(UserError, match="no such"):
        load_action_file(tmp_path / "missing.json")
    with pytest.raises(UserError):
        write_action_file(
            tmp_path / "w.json", env_name="x", grid=grid_summary(env), scoring={},
            actions=[{"substation": 1, "set_bus": [1, 2]}],
        )  # fmt: skip


def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys):
    cases = [
        ["--env", "no_such_env", "--out", str(tmp_path / "a.json")],
        ["--env", "l2rpn_case14_sandbox", "--out", str(tmp_path / "a.json"), "--states", "0"],
        ["--env", "l2rpn_case14_sandbox", "--out", str(tmp_path)],
    ]
    for argv in cases:
        with pytest.raises(SystemExit) as exc:  # argparse errors exit directly
            raise SystemExit(run(main, argv))
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err
    proc = subprocess.run(
        [sys.executable, "-m", "distributed_grid2op.actions", "--env", "nope", "--out", "x.json"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def no_overflow_env():
    from distributed_grid2op.envs import make_env

    env = make_env("l2rpn_case14_sandbox", params={"NO_OVERFLOW_DISCONNECTION": True})
    yield env
    env.close()


def _disconnected(env, line):
    env.reset(seed=0, options={"time serie id": 0})
    obs, *_ = env.step(env.action_space({"set_line_status": [(line, -1)]}))
    assert grid.reconnectable_lines(obs).tolist() == [line]
    return obs


def test_safe_reconnection_refuses_an_overloading_one(no_overflow_env):
    env = no_overflow_env
    # line 17 out: the grid is at ~0.70; reconnecting it brings the max rho to ~0.80 (worse)
    obs = _disconnected(env, 17)
    base = simulated_max_rho(obs, env.action_space({}))
    back = simulated_max_rho(obs, env.action_space({"set_line_status": [(17, 1)]}))
    assert back > base + 0.05
    assert grid.safe_reconnect_action(env.action_space, obs, danger=base) is None
    # below the danger level, a worse but harmless reconnection is allowed
    ok = grid.safe_reconnect_action(env.action_space, obs, danger=back + 0.05)
    assert ok is not None and ok.line_set_status[17] == 1


def test_safe_reconnection_accepts_a_relieving_one(no_overflow_env):
    env = no_overflow_env
    obs = _disconnected(env, 9)  # line 9 out overloads the grid (max rho > 1); back in: ~0.8
    assert simulated_max_rho(obs, env.action_space({})) > 1.0
    act = grid.safe_reconnect_action(env.action_space, obs, danger=0.5)
    assert act is not None and act.line_set_status[9] == 1
    obs2, *_ = env.step(env.action_space({}))  # nothing reconnectable -> None, no simulation
    obs2, *_ = env.step(env.action_space({"set_line_status": [(9, 1)]}))
    assert grid.safe_reconnect_action(env.action_space, obs2) is None


def test_greedy_search_budget_and_best(reference, case14_env):
    from distributed_grid2op.envs import make_env

    env = make_env("l2rpn_case14_sandbox", thermal_limit_scale=0.85)
    try:
        af = load_action_file(reference, env)
        subs = grid.controllable_substations(env)
        vectors, _ = substation_candidates(env, subs, max_candidates=2000, seed=0)
        cand_subs = np.concatenate([[s] * len(v) for s, v in zip(subs, vectors)])
        cands = [
            env.action_space({"set_bus": {"substations_id": [(int(s), v.tolist())]}})
            for s, v in zip(cand_subs, (r for v in vectors for r in v))
        ]
        st = af.scoring["states"][0]
        from distributed_grid2op.actions.reduce import _play

        obs, _, _ = _play(env, st["scenario"], st["seed"], st["offset"], st["step"], False,
                          replay=st["reconnections"])  # fmt: skip
        for budget in (1, 5, 20):
            idx, n = greedy_search(obs, cands, cand_subs, env, budget=budget)
            assert n <= budget and -1 <= idx < len(cands)
        order = search_order(obs, cand_subs, env)
        focus = {int(env.line_or_to_subid[np.argmax(obs.rho)])}
        focus.add(int(env.line_ex_to_subid[np.argmax(obs.rho)]))
        if any(int(s) in focus for s in cand_subs):
            assert int(cand_subs[order[0]]) in focus  # the ends of the most loaded line first
        idx, n = greedy_search(obs, cands, cand_subs, env, budget=len(cands) + 1)
        assert n == len(cands) + 1
        scores = np.array([simulated_max_rho(obs, a) for a in cands])
        base = simulated_max_rho(obs, env.action_space({}))
        if scores.min() < base - 1e-9:
            assert np.isclose(scores[idx], scores.min())
        else:
            assert idx == -1
    finally:
        env.close()


class _Obs:
    """What the reconnection rule reads of an observation (no simulation with rule "first")."""

    def __init__(self, step, out=()):
        self.current_step = step
        self.line_status = np.ones(20, dtype=bool)
        self.line_status[list(out)] = False
        self.time_before_cooldown_line = np.zeros(20, dtype=int)
        self.time_before_cooldown_sub = np.zeros(14, dtype=int)
        self.rho = np.full(20, 0.5)


def test_a_reconnection_that_does_not_take_is_retried_later_not_every_step(case14_env):
    from distributed_grid2op.loop import RETRY_WAIT, Controller

    rules = Controller(case14_env, danger=np.inf, reconnect="first")
    first = rules.decide(_Obs(10, out=[3]))
    assert first.decision.agent == "reconnect" and first.decision.action_id == 3
    # still out at the next step (an opponent holds it down): not retried before the wait
    for step in range(11, 11 + RETRY_WAIT):
        assert rules.decide(_Obs(step, out=[3])).decision.agent == ""
    again = rules.decide(_Obs(11 + RETRY_WAIT, out=[3]))
    assert again.decision.action_id == 3
    # fails again: the wait doubles
    for step in range(12 + RETRY_WAIT, 12 + 3 * RETRY_WAIT):
        assert rules.decide(_Obs(step, out=[3])).decision.agent == ""
    assert rules.decide(_Obs(12 + 3 * RETRY_WAIT, out=[3])).decision.action_id == 3
    # another line is not held back by line 3's failures
    assert rules.decide(_Obs(13 + 3 * RETRY_WAIT, out=[3, 5])).decision.action_id == 5
    rules.reset()
    assert rules.decide(_Obs(14 + 3 * RETRY_WAIT, out=[3])).decision.action_id == 3


class _SimObs(_Obs):
    """An observation whose every simulation comes out at max rho 0.5 (any line is safe)."""

    def __init__(self, step, out=(), rho=None):
        super().__init__(step, out)
        if rho is not None:
            self.rho = np.asarray(rho, dtype=float)

    def simulate(self, action):
        return _Obs(self.current_step + 1), 0.0, False, {}


def test_hold_leaves_a_line_that_tripped_on_overload_out(case14_env):
    from distributed_grid2op.loop import Controller

    hot = np.full(20, 0.5)
    hot[3] = 1.05  # line 3 overloaded; line 5 is not when both go out
    for rule, expected in (("safe", 3), ("hold", 5)):
        rules = Controller(case14_env, danger=np.inf, reconnect=rule)
        assert rules.decide(_SimObs(10, rho=hot)).decision.agent == ""
        # at step 11 both lines are out: 3 tripped on overload, 5 was taken (opponent)
        assert rules.decide(_SimObs(11, out=[3, 5])).decision.action_id == expected
        if rule == "hold":  # line 3 stays out for the rest of the episode ...
            for step in range(12, 12 + 300):
                assert rules.decide(_SimObs(step, out=[3])).decision.agent == ""
            rules.reset()  # ... not beyond it
            assert rules.decide(_SimObs(0, out=[3])).decision.action_id == 3


def test_revert_brings_a_split_substation_back_when_safe(case14_env):
    from distributed_grid2op.loop import Controller

    env = case14_env
    env.reset(seed=0, options={"time serie id": 0})
    split = grid.unitary_topologies(env, 5)
    split = next(a for a in split if (grid.substation_topology(a, 5, env) == 2).any())
    obs, _, done, info = env.step(split)
    assert not done and not info["exception"]
    assert grid.split_substations(env, obs).tolist() == [5]
    for _ in range(3):  # past the substation's cooldown
        obs, *_ = env.step(env.action_space({}))
    assert grid.revert_action(env, obs, level=1e-3) is None  # not safe enough: stays split
    action, sub = grid.revert_action(env, obs, level=2.0)
    assert sub == 5
    rules = Controller(env, danger=0.99, revert=0.99)
    rule = rules.decide(obs)
    assert rule.decision.agent == "revert" and rule.decision.substation == 5
    obs, *_ = env.step(rule.action)
    assert grid.split_substations(env, obs).size == 0
    assert Controller(env, danger=0.99).decide(obs).decision.agent == ""  # off by default
    with pytest.raises(UserError):
        Controller(env, danger=0.9, revert=0.95)


def test_ranking_keeps_each_stressed_state_best_remedy():
    from distributed_grid2op.actions.reduce import rank_candidates

    # state 0 is relieved (a lot) by candidate 0 only; candidates 1-3 relieve states 1 and 2 a
    # little: ranking by frequency alone keeps 1 and 2 and loses state 0's remedy
    base = np.array([1.5, 1.1, 1.1])
    scores = np.array(
        [
            [1.0, 1.5, 1.5, 1.5],
            [1.2, 1.0, 1.02, 1.05],
            [1.2, 1.0, 1.02, 1.05],
        ]
    )
    subs = np.array([4, 5, 5, 8])
    picked, stats = rank_candidates(
        base, scores, subs, per_substation=5, max_actions=2, min_relief=0.01
    )
    assert sorted(picked) == [0, 1]
    assert stats["relieved"].tolist() == [1, 2, 2, 2]
    picked, _ = rank_candidates(
        base, scores, subs, per_substation=1, max_actions=4, min_relief=0.01
    )
    assert picked == [0, 1, 3]  # one per substation; by substation


def test_states_are_the_moments_to_act_not_the_peaks():
    from distributed_grid2op.actions.reduce import danger_moments, select_states

    rhos = [0.5, 0.92, 0.97, 1.02, 1.4, 0.8, 0.95, 0.93, 0.7, 1.1]
    # periods: steps 1-4 (first overload at 3, peak 1.4), 6-7 (no overload), 9 (alone)
    assert danger_moments(rhos, 0.9) == [(1.4, 3), (0.95, 6), (1.1, 9)]
    episodes = [{"scenario": 0, "seed": 1, "offset": 0, "rhos": np.asarray(rhos)}]
    steps = [s["step"] for s in select_states(episodes, 2, 0.9, min_gap=2)]
    assert steps == [3, 9]  # the most severe periods' moments, not the peak (step 4)
    steps = [s["step"] for s in select_states(episodes, 4, 0.9, min_gap=2)]
    assert steps == [1, 3, 6, 9]  # then by max rho: steps 4, 2 and 7 are too close to one kept
