"""The optimisation expert: its DC model matches the AC flows, it relieves an overload that
do-nothing leaves, its actions are legal on the 118-bus grid, it acts only in danger."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from distributed_grid2op.envs import make_env
from distributed_grid2op.errors import UserError
from distributed_grid2op.loop import Turn
from distributed_grid2op.opf import OPFExpert, branch_susceptances, dc_flows


def test_dc_flows_match_the_ac_flows(storage_env):
    """Within 5 MW and 10% of the largest flow (measured: 3 MW, 7%) along an episode, also
    with a line out (the PTDF follows the observation's topology)."""
    env = storage_env
    b = branch_susceptances(env)
    obs = env.reset(options={"time serie id": 0})
    for t in range(6):
        action = env.action_space({"change_line_status": [2]}) if t == 3 else None
        obs, *_ = env.step(action or env.action_space())
        flows, ac = dc_flows(obs, b), np.asarray(obs.p_or)
        assert np.max(np.abs(flows - ac)) <= min(5.0, 0.1 * np.max(np.abs(ac)))
    assert not obs.line_status[2] and flows[2] == 0.0
    # a DC flow is not the AC flow of another state: the check above can fail
    assert np.max(np.abs(np.roll(flows, 1) - ac)) > 5.0


@pytest.mark.parametrize(("line", "forecast"), [(0, True), (3, True), (0, False)])
def test_opf_relieves_an_overload_that_do_nothing_leaves(storage_env, line, forecast):
    """Line ``line``'s thermal limit is cut so that it runs at ~105%: do-nothing leaves it
    overloaded at the next step; after the expert's redispatch / storage action (decided
    around the simulated next step, or around the current one) every line is under its
    limit."""
    env = storage_env
    limits = env.get_thermal_limit().copy()
    try:
        obs = env.reset(options={"time serie id": 0})
        for _ in range(3):
            obs, *_ = env.step(env.action_space())
        cut = limits.copy()
        cut[line] = obs.a_or[line] / 1.05
        env.set_thermal_limit(cut)
        obs, *_ = env.step(env.action_space())
        assert obs.rho[line] > 1.0
        twin = env.copy()
        after_nothing, *_ = twin.step(twin.action_space())
        twin.close()
        assert after_nothing.rho[line] > 1.0
        expert = OPFExpert(env.action_space, env, forecast=forecast)
        action = expert.act(obs)
        assert expert.n_decisions_ == 1 and expert.status_ == ["optimal"]
        assert np.any(action.redispatch != 0) or np.any(action.storage_p != 0)
        after, _, done, info = env.step(action)
        assert not (done or info["is_illegal"] or info["is_ambiguous"])
        assert np.max(after.rho) <= 1.0
    finally:
        env.set_thermal_limit(limits)


def test_opf_acts_only_in_danger_and_reports_its_time(storage_env):
    env = storage_env
    expert = OPFExpert(env.action_space, env)
    obs = env.reset(options={"time serie id": 0})
    assert obs.rho.max() < expert.danger
    assert expert.act(obs) == env.action_space() and expert.n_decisions_ == 0
    action, decision = expert.decide(obs, Turn())
    assert decision.agent == "opf" and decision.simulations == 1
    assert len(expert.solve_ms_) == len(expert.decide_ms_) == 1
    assert 0 < expert.solve_ms_[0] <= expert.decide_ms_[0]
    # nothing to relieve, no redispatch to unwind: the optimum changes nothing
    assert not np.any(action.redispatch) and not np.any(action.storage_p)


def test_opf_on_the_118_bus_grid_is_optimal_and_legal():
    env = make_env("l2rpn_idf_2023", seed=0)
    try:
        expert = OPFExpert(env.action_space, env, rho_max=0.8)  # binding on this grid
        obs = env.reset(options={"time serie id": 0})
        moved = 0.0
        for _ in range(3):
            action, _ = expert.decide(obs, Turn())
            moved += float(np.abs(action.redispatch).sum() + np.abs(action.storage_p).sum())
            obs, _, done, info = env.step(action)
            assert not (done or info["is_illegal"] or info["is_ambiguous"])
            assert not info["failed_redispatching"]
        assert expert.status_ == ["optimal"] * 3 and moved > 0
    finally:
        env.close()


def test_opf_bad_input_is_a_user_error(storage_env):
    with pytest.raises(UserError, match="lightsim2grid backend"):
        branch_susceptances(SimpleNamespace(backend=object()))
    with pytest.raises(UserError, match="does not support curtailment"):
        OPFExpert(storage_env.action_space, storage_env, kinds=["curtailment"])
    with pytest.raises(UserError, match="rho_max"):
        OPFExpert(storage_env.action_space, storage_env, rho_max=0.0)


def test_opf_is_a_baseline_asked_for_by_name(storage_env, tmp_path):
    from distributed_grid2op.baselines import BASELINES, make_baseline
    from distributed_grid2op.envs import EnvSpec
    from distributed_grid2op.evaluation import evaluate, run_specs

    assert "opf" not in BASELINES  # not in every default evaluation
    assert isinstance(make_baseline("opf", storage_env), OPFExpert)
    runs = run_specs(["do-nothing", "opf"])
    spec = EnvSpec("educ_case14_storage", thermal_limit_scale=0.8)
    result = evaluate(runs, spec, tmp_path, episodes=1, max_steps=30, progress=False)
    decisions = result.steps.groupby("run")["agent"].apply(lambda a: (a == "opf").sum())
    assert decisions["opf"] > 0 and decisions["do-nothing"] == 0  # it acted in danger
