"""Continuous cluster agents (redispatch, curtailment, storage) beside the topology agents:
the SAC adapter, acting every step in the one decision loop, training, save / load, resume,
evaluation's cost columns and the ``units`` figure."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import torch
from filelock import FileLock

from distributed_grid2op import cost
from distributed_grid2op.agents.hierarchical import (
    HierarchicalAgent,
    default_actions,
    load_agent,
    read_metadata,
)
from distributed_grid2op.agents.learners import make_learner
from distributed_grid2op.agents.ppo import PPOLearner
from distributed_grid2op.agents.sac import SACConfig, SACLearner
from distributed_grid2op.continuous import ContinuousActionSet, joint_action
from distributed_grid2op.envs import make_env, quiet_grid2op
from distributed_grid2op.errors import UserError
from distributed_grid2op.evaluation import EvaluateConfig, run_evaluation
from distributed_grid2op.factorization_file import load_factorization
from distributed_grid2op.loop import DecisionLoop, play
from distributed_grid2op.main import TrainConfig, train
from distributed_grid2op.training import run_episode

ENV = "educ_case14_storage"
QUICK_SAC = {"learning_starts": 32, "batch_size": 32, "hidden": [32, 32]}


@pytest.fixture(scope="module")
def sandbox():
    with quiet_grid2op():
        env = make_env("l2rpn_case14_sandbox")
    yield env
    env.close()


@pytest.fixture(scope="module")
def sandbox_agent(sandbox):
    """The thesis agent: topology only (making it enumerates the topologies: seconds)."""
    return HierarchicalAgent(sandbox, None)


def _agent(env, **kwargs) -> HierarchicalAgent:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the thesis partition was made for the sandbox
        return HierarchicalAgent(env, None, unit_config=SACConfig.from_dict(QUICK_SAC), **kwargs)


def _train(out, episodes: int, resume: bool = False):
    """A quick training on the storage env: episodes start at a random step in [0, 200], so
    that they are short (the storage env's scenarios have 288 steps)."""
    config = TrainConfig(env=ENV, episodes=episodes, episodes_per_update=1, checkpoint_every=1,
                         seed=7, out=str(out), resume=resume, progress=False, max_start=200,
                         unit_learner_config=dict(QUICK_SAC)).validate()  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(config)


def _once(tmp_path_factory, worker_id: str, name: str, build):
    """``build(folder)`` run once per test session even when xdist workers all ask for it
    (they share the session's temporary folder; a lock makes the others wait)."""
    base = tmp_path_factory.getbasetemp()
    folder = (base if worker_id == "master" else base.parent) / name
    with FileLock(f"{folder}.lock"):
        if not (folder / "done").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / "done").write_text("")
    return folder


# ---- the learner adapter ---------------------------------------------------------------------


def test_make_learner_builds_sac_from_the_box_and_ppo_from_the_discrete_set(
    storage_env, sandbox_agent
):
    box = ContinuousActionSet.from_env(storage_env)
    sac = make_learner("sac", 11, box, SACConfig(hidden=(8,)), seed=1)
    assert isinstance(sac, SACLearner) and sac.n_obs == 11 and sac.n_act == box.n
    np.testing.assert_array_equal(sac.low, box.space.low)
    np.testing.assert_array_equal(sac.high, box.space.high)
    action = sac.act(np.zeros(11, np.float32))[0]
    assert action.shape == (box.n,) and np.all(np.abs(action) <= 1.0)

    agent = sandbox_agent  # topology: PPO over each cluster's set, as before
    for learner, c in zip(agent.learners, agent.decomposition.clusters):
        assert isinstance(learner, PPOLearner)
        assert learner.n_actions == c.n_actions
    with pytest.raises(UserError, match="cannot act on box"):
        make_learner("ppo", 11, box)
    with pytest.raises(UserError, match="cannot act on topology"):
        make_learner("sac", 11, agent.decomposition.clusters[0].action_set)


# ---- what the agent controls -----------------------------------------------------------------


def test_default_actions_keep_the_thesis_setting_topology_only(storage_env, sandbox, sandbox_agent):
    thesis = load_factorization(None, env=sandbox)
    assert default_actions(sandbox, thesis) == ("topology",)
    assert sandbox_agent.actions == ("topology",) and sandbox_agent.unit_learners == []
    with_units = thesis.with_units(type(sandbox).gen_to_subid, type(sandbox).storage_to_subid)
    assert default_actions(sandbox, with_units)[0] == "topology"
    assert "redispatch" in default_actions(sandbox, with_units)
    # no set-bus action on the storage env: its continuous kinds
    assert default_actions(storage_env, thesis) == ("redispatch", "storage")
    with pytest.raises(UserError, match="no topology"):
        _agent(storage_env, actions=("topology",))
    with pytest.raises(UserError, match="does not support curtailment"):
        _agent(storage_env, actions=("curtailment",))


def test_each_cluster_controls_its_own_units_and_the_centralised_one_all(storage_env):
    agent = _agent(storage_env)
    boxes = [agent.decomposition.clusters[i].units for i in agent.unit_clusters]
    gens = np.concatenate([b.redispatch for b in boxes])
    stos = np.concatenate([b.storage for b in boxes])
    cls = type(storage_env)
    assert sorted(gens) == np.flatnonzero(cls.gen_redispatchable).tolist()  # a partition
    assert sorted(stos) == list(range(cls.n_storage))
    for box, i in zip(boxes, agent.unit_clusters):
        subs = agent.factorization.clusters[i].substations
        assert set(cls.gen_to_subid[box.redispatch]) <= set(subs)
        assert set(cls.storage_to_subid[box.storage]) <= set(subs)
    central = _agent(storage_env, centralized=True)
    assert central.unit_clusters == [0] and len(central.unit_learners) == 1
    assert central.decomposition.clusters[0].units.n == len(gens) + len(stos)


def test_topology_plus_continuous_actions_sum_without_ambiguity(sandbox):
    """Topology decisions (danger threshold tiny: a decision every step) plus the clusters'
    redispatch: every step's action carries both, and grid2op accepts it."""
    agent = HierarchicalAgent(sandbox, None, actions=("topology", "redispatch"), danger=1e-3,
                              seed=3, reconnect="none")  # fmt: skip
    assert len(agent.learners) == 2 and len(agent.unit_learners) >= 1
    seen = []

    def check(step):
        info = step.info
        assert not info["is_illegal"] and not info["is_ambiguous"]
        assert not info["failed_redispatching"]
        seen.append((step.decision.action_id > 0, bool(np.any(step.action.redispatch != 0))))

    loop = DecisionLoop(sandbox, agent.controller, observer=check,
                        every_step=agent.every_step(deterministic=False,
                                                    rng=torch.Generator().manual_seed(0)))  # fmt: skip
    loop.reset(seed=0, options={"time serie id": 0, "max step": 12})
    play(loop, agent, deterministic=False, rng=np.random.default_rng(0))
    assert any(topo and dispatch for topo, dispatch in seen)


def test_joint_action_shares_the_margin_and_equals_to_grid2op_for_one_set(storage_env):
    obs = storage_env.reset(options={"time serie id": 0})
    box = ContinuousActionSet.from_env(storage_env)
    x = np.linspace(-1, 1, box.n)
    single = box.to_grid2op(x, obs)
    joint = joint_action([box], [x], obs)
    np.testing.assert_allclose(joint.redispatch, single.redispatch)
    np.testing.assert_allclose(joint.storage_p, single.storage_p)
    agent = _agent(storage_env)
    parts = [agent.decomposition.clusters[i].units for i in agent.unit_clusters]
    xs = [np.ones(p.n) for p in parts]
    merged = joint_action(parts, xs, obs)
    for p, xi in zip(parts, xs):  # each part alone is legal; together, the same units move
        alone = p.to_grid2op(xi, obs)
        np.testing.assert_allclose(merged.redispatch[p.redispatch], alone.redispatch[p.redispatch])


# ---- training: transitions, reward, seeds, resume, save / load ---------------------------------


def test_transitions_carry_the_cost_reward_and_the_game_over_penalty():
    with quiet_grid2op(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = make_env(ENV, thermal_limit_scale=0.8)  # game over within a few steps
    agent = _agent(env, game_over_cost=1234.0)
    out = run_episode(agent, env, scenario=1, seed=5)
    env.close()
    steps = out["stats"]["survived_steps"] + 1  # the game-over step is a transition too
    assert out["stats"]["max_steps"] > steps
    for c, t in zip(agent.unit_clusters, out["units"]):
        cv = agent.decomposition.clusters[c]
        assert t["obs"].shape == t["next_obs"].shape == (steps, cv.n_unit_features)
        assert t["actions"].shape == (steps, cv.units.n)
        assert t["dones"].tolist() == [0.0] * (steps - 1) + [1.0]
        assert t["rewards"][-1] == -1234.0
        assert np.all(t["rewards"][:-1] <= 0.0)  # costs
        np.testing.assert_array_equal(t["next_obs"][:-1], t["obs"][1:])
    assert out["stats"]["unit_reward"] == pytest.approx(float(out["units"][0]["rewards"].sum()))


def _build_trained(root) -> None:
    """Two episodes straight, and one then resumed to two (same seed)."""
    _train(root / "straight", 2)
    _train(root / "resumed", 1)
    _train(root / "resumed", 2, resume=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, worker_id):
    return _once(tmp_path_factory, worker_id, "continuous_trained", _build_trained)


def test_training_is_reproducible_and_resume_is_exact(trained):
    a, b = trained / "straight", trained / "resumed"
    assert (a / "train_log.csv").read_bytes() == (b / "train_log.csv").read_bytes()
    assert (a / "final" / "weights.pt").read_bytes() == (b / "final" / "weights.pt").read_bytes()
    log = (a / "train_log.csv").read_text().splitlines()
    assert log[0].endswith(",unit_reward") and len(log) == 3
    # the continuous agents learned: their weights moved from the initial checkpoint
    first = torch.load(a / "checkpoints" / "ep000000" / "weights.pt", weights_only=False)
    last = torch.load(a / "final" / "weights.pt", weights_only=False)
    assert len(last) == 2 and all(state["n_updates"] > 0 for state in last)  # two SAC agents
    moved = [not torch.equal(first[0]["actor"][k], last[0]["actor"][k]) for k in last[0]["actor"]]
    assert any(moved)
    assert (a / "checkpoints" / "ep000001" / "replay.pt").is_file()


def test_saved_agent_names_its_learners_and_loads(trained, storage_env):
    meta = read_metadata(trained / "straight" / "final")
    assert meta["format"] == 3 and meta["actions"] == ["redispatch", "storage"]
    assert meta["unit_learner"] == "sac" and meta["unit_learner_config"]["batch_size"] == 32
    assert meta["unit_reward"]["game_over_cost"] == cost.GAME_OVER_COST
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = load_agent(trained / "straight", storage_env)
    saved = torch.load(trained / "straight" / "final" / "weights.pt", weights_only=False)
    for learner, state in zip(agent.unit_learners, saved, strict=True):
        assert isinstance(learner, SACLearner) and learner.n_updates_ == state["n_updates"]
        for k, v in learner.actor.state_dict().items():
            assert torch.equal(v, state["actor"][k])
    obs = storage_env.reset(options={"time serie id": 0})
    first, again = (agent.every_step(deterministic=True)(obs)[1]["actions"] for _ in range(2))
    for x, y in zip(first, again):  # the greedy policy: the same choice for the same state
        np.testing.assert_array_equal(x, y)


def test_topology_only_agents_keep_format_2(sandbox_agent, tmp_path):
    sandbox_agent.save(tmp_path / "a")
    meta = json.loads((tmp_path / "a" / "agent.json").read_text())
    assert meta["format"] == 2 and "actions" not in meta
    assert len(torch.load(tmp_path / "a" / "weights.pt", weights_only=False)) == 2


# ---- evaluation and the figure -----------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory, worker_id):
    config = EvaluateConfig(agents=[str(trained / "straight")], baselines=["do-nothing"],
                            env=ENV, episodes=1, scenarios="all", workers=1,
                            progress=False)  # fmt: skip

    def build(out):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_evaluation(config.replace(out=str(out)))

    out = _once(tmp_path_factory, worker_id, "continuous_evaluated", build)
    with warnings.catch_warnings():  # the same settings: every episode is read back from disk
        warnings.simplefilter("ignore")
        return run_evaluation(config.replace(out=str(out)))


def test_the_agent_acts_legally_every_step_and_costs_match_step_costs(evaluated, storage_env):
    steps = evaluated.steps
    run = "straight"
    mine = steps[steps["run"] == run].reset_index(drop=True)
    assert len(mine) > 1 and mine["illegal"].sum() == 0 and mine["ambiguous"].sum() == 0
    # replay the same episode with the saved agent and recompute everything
    plan = json.loads((evaluated.out / "run_config.json").read_text())["plan"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = load_agent(_agent_dir(evaluated), storage_env)
    rows = []

    def record(step):
        info = step.info
        assert not info["is_illegal"] and not info["is_ambiguous"]
        assert not info["failed_redispatching"]
        if not (step.done and info.get("exception")):
            terms = cost.step_costs(step.obs_before, step.obs)
            rows.append({**{f"cost_{k}": v for k, v in terms.items()},
                         "redispatched_mwh": cost.redispatched_mwh(step.obs_before, step.obs),
                         "storage_charge_mwh_0": float(step.obs.storage_charge[0]),
                         "storage_power_mw_1": float(step.obs.storage_power[1])})  # fmt: skip

    loop = DecisionLoop(storage_env, agent.controller, observer=record,
                        every_step=agent.every_step(deterministic=True))  # fmt: skip
    obs = loop.reset(seed=plan["seed"], options={"time serie id": plan["scenario"]})
    agent.reset(obs)
    play(loop, agent)
    assert len(rows) == int(mine["game_over"].eq(0).sum())
    for col in rows[0]:
        np.testing.assert_allclose(mine[col].to_numpy()[: len(rows)],
                                   [r[col] for r in rows], rtol=1e-5, atol=1e-6)  # fmt: skip
    weights = np.array([cost.DEFAULT_WEIGHTS[t] for t in cost.TERMS])
    np.testing.assert_allclose(
        mine["total_cost"].to_numpy()[: len(rows)],
        mine[[f"cost_{t}" for t in cost.TERMS]].to_numpy()[: len(rows)] @ weights,
        rtol=1e-6,
    )
    # the continuous agents did act; do-nothing never moves a storage unit
    assert mine["redispatched_mwh"].max() > 0 or mine["storage_power_mw_0"].abs().max() > 0
    idle = steps[steps["run"] == "do-nothing"]
    assert idle["storage_power_mw_0"].abs().max() == 0 and idle["redispatched_mwh"].max() == 0


def _agent_dir(evaluated):
    runs = json.loads((evaluated.out / "run_config.json").read_text())["runs"]
    return next(r["source"] for r in runs if r["kind"] == "agent")


def test_summaries_carry_the_total_cost(evaluated):
    steps, daily, episodes, runs = (evaluated.steps, evaluated.daily, evaluated.episodes,
                                    evaluated.runs)  # fmt: skip
    for run, e in episodes.groupby("run"):
        s = steps[(steps["run"] == run) & (steps["game_over"] == 0)]
        assert e["total_cost"].iloc[0] == pytest.approx(s["total_cost"].sum())
        assert e["curtailed_mwh"].iloc[0] == pytest.approx(s["cost_curtailment"].sum())
        assert daily[daily["run"] == run]["total_cost"].sum() == pytest.approx(
            s["total_cost"].sum()
        )
        assert e["cost_per_step"].iloc[0] == pytest.approx(
            e["total_cost"].iloc[0] / e["survived_steps"].iloc[0]
        )
    assert runs.set_index("run")["total_cost_mean"].notna().all()


def test_units_figure_is_written(evaluated, tmp_path):
    from distributed_grid2op.cli import run
    from distributed_grid2op.plots import main as plots_main

    csv = evaluated.out / "step_metrics.csv"
    out = tmp_path / "units.png"
    assert run(plots_main, ["units", str(csv), "--day", "0", "--output", str(out)]) == 0
    assert out.is_file() and out.stat().st_size > 1000


def test_units_figure_refuses_a_missing_day(evaluated, tmp_path, capsys):
    from distributed_grid2op.cli import run
    from distributed_grid2op.plots import main as plots_main

    csv = evaluated.out / "step_metrics.csv"
    code = run(plots_main, ["units", str(csv), "--day", "40", "--output", str(tmp_path / "u.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error:") and "no day 40" in err[0]


# ---- CLI ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--actions", "topology,wind"], "unknown action kind wind"),
        (["--cost-weights", "overload=x"], "is not a number"),
        (["--cost-weights", "noise=1"], "unknown cost term"),
        (["--env", ENV, "--actions", "topology"], "no topology"),
        (["--unit-learner", "ppo"], "cannot act on continuous"),
    ],
)
def test_bad_continuous_options_are_one_line_errors(argv, message, tmp_path, capsys):
    from distributed_grid2op.cli import run
    from distributed_grid2op.main import main

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            code = run(main, [*argv, "--out", str(tmp_path / "o"), "--episodes", "1"])
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert code == 2 and len(err) == 1 and message in err[0]


def test_steps_per_day_reads_one_episode_not_two_starts():
    """Episodes start at different dates: the step length comes from steps 1 and 2 of the same
    episode (the figures' time axis), never from two episodes' first steps."""
    import pandas as pd

    from distributed_grid2op.plots import _steps_per_day

    rows = [{"run": "a", "episode": e, "step": s,
             "datetime": str(pd.Timestamp(start) + pd.Timedelta(minutes=15 * (s - 1)))}
            for e, start in ((0, "2019-01-05 00:00"), (1, "2019-01-01 00:10"))
            for s in (1, 2, 3)]  # fmt: skip
    assert _steps_per_day(pd.DataFrame(rows)) == 96.0


def test_storage_is_scaled_back_towards_its_current_power_not_to_zero(storage_env):
    """Two discharging units asked to stop while the generators can hardly ramp up: the
    translation keeps them discharging enough for the dispatch to follow (stopping them at
    once was a game over of the dispatch)."""
    from distributed_grid2op.continuous import (
        MARGIN_SHARE,
        UnitValues,
        dispatch_margin,
        legal_action,
    )

    cls = type(storage_env)
    obs = storage_env.reset(options={"time serie id": 0}).copy()
    g = np.flatnonzero(cls.gen_redispatchable)
    obs.gen_p[g] = cls.gen_pmax[g] - 1.0  # 1 MW of headroom each
    obs.storage_charge = cls.storage_Emax / 2
    obs.storage_power = -np.array([4.0, 8.0])  # discharging 12 MW
    flat = obs.gen_p - obs.actual_dispatch  # the schedule does not move at the next step
    obs.get_forecasted_inj = lambda time_step=1: (flat, None, None, None)
    up = MARGIN_SHARE * dispatch_margin(obs)[1]
    assert up < 12.0
    units = np.arange(cls.n_storage)
    _, legal = legal_action(storage_env.action_space, obs, UnitValues(storage=(units, [0.0, 0.0])))
    p = legal.storage[1]
    assert np.all(p < 0) and np.all(p >= obs.storage_power)  # still discharging, less
    assert float(np.sum(p - obs.storage_power)) <= up + 1e-6  # the extra need fits the margin


def test_margin_leaves_out_what_the_schedule_itself_ramps(storage_env):
    """A schedule that ramps its generators down at full speed at the next step leaves no
    room to take more generation off them: a storage discharge (generation the dispatch must
    remove) is scaled back to the units' current power; with a flat schedule it is granted."""
    from distributed_grid2op.continuous import UnitValues, dispatch_margin, legal_action

    cls = type(storage_env)
    obs = storage_env.reset(options={"time serie id": 0}).copy()
    g = cls.gen_redispatchable & (obs.gen_p > 1.0)
    scheduled = obs.gen_p - obs.actual_dispatch
    obs.storage_charge = cls.storage_Emax / 2
    obs.storage_power = np.zeros(cls.n_storage)
    units = np.arange(cls.n_storage)
    ask = UnitValues(storage=(units, [-5.0, -5.0]))  # discharge 10 MW
    obs.get_forecasted_inj = lambda time_step=1: (scheduled, None, None, None)
    flat_down, _ = dispatch_margin(obs)
    _, granted = legal_action(storage_env.action_space, obs, ask)
    falling = np.where(g, scheduled - cls.gen_max_ramp_down, scheduled)
    obs.get_forecasted_inj = lambda time_step=1: (falling, None, None, None)
    down, up = dispatch_margin(obs)
    _, held = legal_action(storage_env.action_space, obs, ask)
    assert flat_down < -10.0 and abs(down) < 1e-6 and up > 0  # the ramp-down room is used up
    np.testing.assert_allclose(granted.storage[1], [-5.0, -5.0])
    np.testing.assert_allclose(held.storage[1], [0.0, 0.0], atol=1e-9)
