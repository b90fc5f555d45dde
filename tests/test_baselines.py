"""Baselines: do-nothing, reconnect and the greedy expert obey the agent contract."""

from __future__ import annotations

import numpy as np
import pytest

from distributed_grid2op.baselines import (
    BASELINES,
    DoNothing,
    GreedyExpert,
    Reconnect,
    make_baseline,
)
from distributed_grid2op.envs import make_env
from distributed_grid2op.errors import UserError
from distributed_grid2op.grid import controllable_substations, unitary_topologies


@pytest.fixture(scope="module")
def stressed_case5():
    env = make_env("rte_case5_example", thermal_limit_scale=0.85)
    yield env
    env.close()


def _danger_obs(env):
    """First observation of scenario 0 (max rho >= 0.9 with limits x 0.85)."""
    obs = env.reset(seed=0, options={"time serie id": 0})
    assert obs.rho.max() >= 0.9
    return obs


def test_do_nothing_contract(case5_env):
    agent = DoNothing(case5_env.action_space)
    obs = case5_env.reset(seed=0, options={"time serie id": 0})
    agent.reset(obs)
    action = agent.act(obs, 0.0, False)
    assert action == case5_env.action_space({})
    assert agent.last_decision == {"agent": "", "action_id": -1, "substation": -1}


def test_reconnect_reconnects_a_cut_line_after_its_cooldown(case5_env):
    env = case5_env
    agent = Reconnect(env.action_space)
    obs = env.reset(seed=0, options={"time serie id": 0})
    assert agent.act(obs, 0.0, False) == env.action_space({})
    assert agent.last_decision["agent"] == ""
    obs, *_ = env.step(env.action_space({"set_line_status": [(3, -1)]}))
    assert not obs.line_status[3]
    for _ in range(int(obs.time_before_cooldown_line[3])):
        assert agent.act(obs, 0.0, False) == env.action_space({})  # still in cooldown
        obs, *_ = env.step(env.action_space({}))
    action = agent.act(obs, 0.0, False)
    assert action.line_set_status[3] == 1
    assert agent.last_decision == {"agent": "reconnect", "action_id": 3, "substation": -1}
    obs, *_ = env.step(action)
    assert obs.line_status[3]


def test_expert_takes_the_lowest_simulated_max_rho(stressed_case5):
    env = stressed_case5
    obs = _danger_obs(env)
    agent = GreedyExpert(env.action_space, env)
    subs = controllable_substations(env)
    assert len(agent.candidates_) == sum(len(unitary_topologies(env, s)) for s in subs)
    action = agent.act(obs, 0.0, False)
    d = agent.last_decision
    assert d["agent"] == "expert" and d["action_id"] >= 0
    assert d["substation"] == agent.candidate_subs_[d["action_id"]]
    assert action == agent.candidates_[d["action_id"]]

    def sim(a):
        o, _, done, info = obs.simulate(a)
        return np.inf if done or info["exception"] else float(o.rho.max())

    chosen = sim(action)
    assert chosen < sim(env.action_space({}))
    assert chosen <= min(sim(a) for a in agent.candidates_) + 1e-9
    assert agent.n_simulations_ == len(agent.candidates_) + 1


def test_expert_is_idle_below_danger(stressed_case5):
    env = stressed_case5
    obs = _danger_obs(env)
    agent = GreedyExpert(env.action_space, env, danger=0.999 + obs.rho.max())
    assert agent.act(obs, 0.0, False) == env.action_space({})
    assert agent.last_decision["agent"] == "" and agent.n_simulations_ == 0


def test_make_baseline_names(case5_env):
    kinds = {name: type(make_baseline(name, case5_env)) for name in BASELINES}
    assert kinds == {"do-nothing": DoNothing, "reconnect": Reconnect, "expert": GreedyExpert}
    with pytest.raises(UserError, match="unknown baseline"):
        make_baseline("random", case5_env)


def test_budgeted_expert_over_a_reduced_set(stressed_case5, tmp_path):
    """A reduced action file replaces the full enumeration; the budget bounds the simulations
    of every decision, and each decision reports how many it took."""
    from distributed_grid2op.actions.file import grid_summary, load_action_file, write_action_file
    from distributed_grid2op.grid import substation_topology

    env = stressed_case5
    obs = _danger_obs(env)
    subs = controllable_substations(env)
    full = GreedyExpert(env.action_space, env)
    records = [{"substation": int(s), "set_bus": substation_topology(a, s, env).tolist()}
               for s, a in zip(full.candidate_subs_, full.candidates_)][::2]  # fmt: skip
    path = write_action_file(tmp_path / "a.json", env_name="rte_case5_example",
                             grid=grid_summary(env), scoring={"seed": 0}, actions=records)  # fmt: skip
    reduced = GreedyExpert(env.action_space, env, action_file=load_action_file(path, env), budget=3)
    assert len(reduced.candidates_) == len(records) < len(full.candidates_)
    assert set(reduced.candidate_subs_) <= set(subs)
    _, decision = reduced.predict(obs)
    assert decision.agent == "expert" and 1 <= decision.simulations <= 3
    assert reduced.n_simulations_ == decision.simulations
    _, unbounded = full.predict(obs)
    assert unbounded.simulations == len(full.candidates_) + 1


def test_full_enumeration_is_refused_on_118_bus_grids():
    from distributed_grid2op.action_sets import check_enumerable
    from distributed_grid2op.envs import make_env

    env = make_env("l2rpn_idf_2023")
    with pytest.raises(UserError, match="python -m distributed_grid2op.actions"):
        check_enumerable(env, controllable_substations(env))
    env.close()
