"""Hierarchical agent: rules, decisions, save/load round trip, load errors, grid2op Runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from grid2op.Reward import CloseToOverflowReward

from distributed_grid2op.agents import HierarchicalAgent, load_agent
from distributed_grid2op.envs import make_env
from distributed_grid2op.errors import UserError
from distributed_grid2op.loop import Turn


@pytest.fixture(scope="module")
def env():
    e = make_env("l2rpn_case14_sandbox", seed=0, thermal_limit_scale=0.85, reward=CloseToOverflowReward,
                 params={"MAX_SUB_CHANGED": 2, "MAX_LINE_STATUS_CHANGED": 2})  # fmt: skip
    yield e
    e.close()


def _play(agent, env, scenario=0, steps=120):
    """(actions as dicts, decisions) over the first ``steps`` steps of a scenario."""
    obs = env.reset(options={"time serie id": scenario})
    agent.reset(obs)
    acts, decisions = [], []
    for _ in range(steps):
        a = agent.act(obs, 0.0, False)
        acts.append(a.as_dict())
        decisions.append(dict(agent.last_decision))
        obs, _, done, _ = env.step(a)
        if done:
            break
    return acts, decisions


def test_last_decision_contract(env):
    agent = HierarchicalAgent(env, seed=1)
    _, decisions = _play(agent, env)
    kinds = {d["agent"] for d in decisions}
    assert kinds <= {"", "reconnect", "cluster_0", "cluster_1"} and kinds & {
        "cluster_0",
        "cluster_1",
    }
    for d in decisions:
        assert set(d) == {"agent", "action_id", "substation"}
        if d["agent"].startswith("cluster"):
            cluster = int(d["agent"][-1])
            assert d["substation"] in agent.decomposition.clusters[cluster].controlled
            cv = agent.decomposition.clusters[cluster]
            assert d["action_id"] == 0 or cv.action_substation[d["action_id"]] == d["substation"]
        elif d["agent"] == "":
            assert d == {"agent": "", "action_id": -1, "substation": -1}


def test_safe_grid_means_do_nothing(env):
    agent = HierarchicalAgent(env, danger=10.0)  # never in danger
    acts, decisions = _play(agent, env, steps=30)
    assert all(d["agent"] in ("", "reconnect") for d in decisions)
    assert all(a == {} for a, d in zip(acts, decisions) if d["agent"] == "")


def test_reconnection_before_anything(env):
    agent = HierarchicalAgent(env)
    obs = env.reset(options={"time serie id": 0})
    obs, *_ = env.step(env.action_space({"set_line_status": [(3, -1)]}))
    for _ in range(env.parameters.NB_TIMESTEP_COOLDOWN_LINE):
        obs, *_ = env.step(env.action_space())
    assert not obs.line_status[3] and obs.time_before_cooldown_line[3] == 0
    action = agent.act(obs, 0.0, False)
    assert agent.last_decision["agent"] == "reconnect"
    assert action.line_set_status[3] == 1


def test_save_load_round_trip_identical_actions(env, tmp_path):
    agent = HierarchicalAgent(env, seed=7)
    for learner in agent.learners:  # make the policies non-trivial
        for p in learner.net.actor.parameters():
            p.data.normal_(0, 0.3, generator=__import__("torch").Generator().manual_seed(3))
    agent.save(tmp_path / "ckpt")
    loaded = load_agent(tmp_path / "ckpt", env)
    a1, d1 = _play(agent, env, scenario=1)
    a2, d2 = _play(loaded, env, scenario=1)
    assert d1 == d2 and a1 == a2
    assert any(d["action_id"] > 0 for d in d1)  # the test exercises real topology choices


def test_load_agent_errors(env, tmp_path):
    with pytest.raises(UserError, match="no agent checkpoint"):
        load_agent(tmp_path, env)
    HierarchicalAgent(env).save(tmp_path / "a")
    other = make_env("rte_case5_example")
    try:
        with pytest.raises(UserError, match="another grid"):
            load_agent(tmp_path / "a", other)
    finally:
        other.close()
    meta = json.loads((tmp_path / "a" / "agent.json").read_text())
    meta["format"] = 99
    (tmp_path / "a" / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="format"):
        load_agent(tmp_path / "a", env)


def test_centralized_is_one_cluster(env):
    agent = HierarchicalAgent(env, centralized=True)
    assert len(agent.learners) == 1 and agent.decomposition.clusters[0].controlled == (
        1,
        2,
        3,
        4,
        5,
        8,
        12,
    )


def test_grid2op_runner_evaluates_agent(env):
    from grid2op.Runner import Runner

    agent = HierarchicalAgent(env, seed=0, danger=10.0)  # never in danger: survives like do-nothing
    runner = Runner(**env.get_params_for_runner(), agentClass=None, agentInstance=agent)
    res = runner.run(nb_episode=1, max_iter=20, episode_id=[0])
    assert res[0][3] == 20  # steps played


def test_expert_choice_beats_do_nothing_in_simulation(env):
    agent = HierarchicalAgent(env)
    obs = env.reset(options={"time serie id": 0})
    for _ in range(200):
        what = agent.controller.decide(obs)
        if isinstance(what, Turn):
            break
        obs, *_ = env.step(env.action_space())
    assert isinstance(what, Turn)
    cluster, sub = what.cluster, what.substation
    a = agent.expert_choice(obs, cluster, sub)
    best = obs.simulate(agent.decomposition.clusters[cluster].actions[a])[0].rho.max()
    dn = obs.simulate(env.action_space())[0].rho.max()
    assert best <= dn + 1e-9 and np.isfinite(best)
    scores = agent.expert_scores(obs, cluster, sub)  # the soft-label source agrees
    mask = agent.decomposition.clusters[cluster].action_mask(sub)
    assert np.isinf(scores[~mask]).all() and scores[0] == pytest.approx(dn)
    assert scores[a] == pytest.approx(best) and scores[a] <= scores[mask].min() + 1e-9


def test_top_k_simulation_keeps_the_safest_candidate(env):
    agent = HierarchicalAgent(env, seed=2, top_k=5)
    obs = env.reset(options={"time serie id": 1})  # in danger at step 0 (max rho ~1.09)
    agent.reset(obs)
    action = agent.act(obs, 0.0, False)
    d = agent.last_decision
    assert d["agent"].startswith("cluster")
    sim_rho = obs.simulate(action)[0].rho.max()
    assert sim_rho <= obs.simulate(env.action_space())[0].rho.max() + 1e-9
    cv = agent.decomposition.clusters[int(d["agent"][-1])]
    probs = agent.learners[int(d["agent"][-1])].probabilities(
        cv.features(obs.to_vect(), d["substation"]),
        agent.action_mask(int(d["agent"][-1]), d["substation"]),
    )
    assert d["action_id"] == 0 or d["action_id"] in np.argsort(-probs)[:5]


def _first_turn(agent, env, scenario=0, steps=200):
    """Play the agent's rules from the start of ``scenario`` until its first turn:
    ``(observation, Turn)`` (or the last rule if none comes within ``steps``)."""
    obs = env.reset(options={"time serie id": scenario})
    agent.reset(obs)
    for _ in range(steps):
        what = agent.controller.decide(obs)
        if isinstance(what, Turn):
            break
        obs, *_ = env.step(what.action)
    return obs, what


def test_cluster_scope_agent(env, tmp_path):
    """``scope="cluster"``: the picked cluster chooses among all its substations' topologies
    out of cooldown; its teacher simulates do-nothing and at most ``expert_budget`` - 1 of
    them, the best of which is its label; scope, revert and budget survive save/load."""
    agent = HierarchicalAgent(env, seed=3, scope="cluster", revert=0.8, expert_budget=6)
    obs, what = _first_turn(agent, env)
    assert isinstance(what, Turn) and what.substation == -1
    cv = agent.decomposition.clusters[what.cluster]
    action, d = agent.decide(obs, what)
    assert (d.mask == cv.action_mask(-1, obs.time_before_cooldown_sub)).all()
    assert d.substation == cv.action_substation[d.action_id]
    assert len(set(cv.action_substation[d.mask][1:])) > 1  # more than one substation to choose
    scores = agent.expert_scores(obs, what.cluster, -1)
    assert np.isfinite(scores).sum() <= 6 and np.isfinite(scores[0])
    label = agent.expert_choice(obs, what.cluster, -1, scores)
    assert scores[label] == pytest.approx(np.min(scores))
    agent.save(tmp_path / "c")
    loaded = load_agent(tmp_path / "c", env)
    assert (loaded.scope, loaded.revert, loaded.expert_budget) == ("cluster", 0.8, 6)
    assert loaded.controller.scope == "cluster" and loaded.controller.revert == 0.8
    assert "scope" not in HierarchicalAgent(env).metadata()  # substation-scope agents unchanged


def test_grid_scope_agent_proposals_and_teacher(env):
    """``scope="grid"``: every cluster proposes at a danger step; the acting one is the
    proposer least inclined to do nothing; the teacher labels one cluster at most (the
    owner of the whole-grid search's choice) and trains every cluster on each turn."""
    from distributed_grid2op.training import run_episode

    agent = HierarchicalAgent(env, seed=5, scope="grid", revert=0.8, expert_budget=12)
    obs, what = _first_turn(agent, env)
    assert isinstance(what, Turn) and what.cluster == -1
    _, d = agent.decide(obs, what, deterministic=True)
    props = d.proposals
    assert len(props) == len(agent.decomposition.clusters)
    bids = {p["cluster"]: 1 - agent.learners[p["cluster"]].probabilities(p["features"], p["mask"])[0]
            for p in props}  # fmt: skip
    acting = [p["cluster"] for p in props if p["action"] != 0]
    if acting:
        assert d.cluster == max(acting, key=lambda c: (bids[c], -c))
    else:
        assert d.action_id == -1
    labels, scores, n_sim = agent.grid_expert(obs)
    assert n_sim <= 12 and sum(lab != 0 for lab in labels) <= 1
    dn = scores[0][0]
    assert all(sc[0] == dn for sc in scores)
    for lab, sc in zip(labels, scores):
        if lab:  # the chosen topology beats do-nothing and every other simulated one
            others = np.concatenate([s[1:] for s in scores])
            assert sc[lab] < dn and sc[lab] <= np.min(others) + 1e-9
        else:
            assert np.isinf(sc[1:]).all()
    res = run_episode(agent, env, scenario=0, seed=1, mode="expert")
    turns = res["stats"]["decisions"]
    assert turns > 0
    for t in res["trajectories"]:  # one record per cluster and turn (all clusters can act here)
        assert len(t["actions"]) == turns and t["scores"].shape[0] == turns
        assert (t["scores"][np.arange(turns), t["actions"]] == t["scores"].min(axis=1)).all()


def test_grid2op_can_seed_the_agent(env):
    """grid2op's Runner (and its L2RPN scores) call ``agent.seed(n)`` (`BaseAgent.seed`): the
    agent's own seed must not shadow that method (it did: "'int' object is not callable")."""
    agent = HierarchicalAgent(env, seed=7)
    agent.seed(3)  # BaseAgent.seed: seeds the action space
    assert agent.metadata()["seed"] == 7
