"""Trainer: log columns, checkpoints, resume equivalence, workers, CLI errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import CASE14_STRESS
from grid2op.Reward import CloseToOverflowReward

from distributed_grid2op import cli
from distributed_grid2op.agents import HierarchicalAgent, PPOConfig, load_agent
from distributed_grid2op.envs import EnvSpec
from distributed_grid2op.errors import UserError
from distributed_grid2op.loop import Decision, DecisionLoop, LoopAgent, play
from distributed_grid2op.main import main
from distributed_grid2op.training import Trainer, latest_checkpoint

SPEC = EnvSpec("l2rpn_case14_sandbox", reward=CloseToOverflowReward, **CASE14_STRESS)
SMALL = PPOConfig(hidden=(32,), minibatch_size=16, update_epochs=2)
# short episodes: start late in the 575-step scenarios
KW = dict(spec=SPEC, scenarios=[2], seed=5, episodes_per_update=2, checkpoint_every=4, max_start=540,
          progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def env(case14_stress_env):
    return case14_stress_env


def _weights(agent):
    return [
        torch.cat([p.detach().flatten() for p in learner.net.parameters()])
        for learner in agent.learners
    ]


def _train(env, out, episodes, **kw):
    agent = HierarchicalAgent(env, config=SMALL, seed=5)
    return agent, Trainer(agent, out, **{**KW, **kw}).fit(episodes)


def test_log_and_checkpoints(env, tmp_path):
    agent, trainer = _train(env, tmp_path, 6, imitation_episodes=1, prune_actions=True)
    log = pd.read_csv(tmp_path / "train_log.csv")
    for col in [
        "episode",
        "scenario",
        "seed",
        "survived_steps",
        "max_steps",
        "safe_steps",
        "total_reward",
        "decisions",
        "reward_cluster_0",
        "decisions_cluster_0",
        "reward_cluster_1",
        "decisions_cluster_1",
    ]:
        assert col in log.columns
    assert log.episode.tolist() == list(range(6))
    assert (log.survived_steps <= log.max_steps).all() and (
        log.safe_steps <= log.survived_steps + 1
    ).all()
    assert (log.decisions == log.decisions_cluster_0 + log.decisions_cluster_1).all()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ep000000", "ep000004", "ep000006"]  # after imitation, every 4, at the end
    assert latest_checkpoint(tmp_path).name == "ep000006"
    assert (tmp_path / "imitation_log.csv").is_file() and agent.kept_actions is not None
    loaded = load_agent(tmp_path, env)  # the output folder -> final/
    assert loaded.kept_actions == agent.kept_actions
    assert all(torch.equal(a, b) for a, b in zip(_weights(agent), _weights(loaded)))
    with pytest.raises(UserError, match="already holds a training run"):
        Trainer(HierarchicalAgent(env, config=SMALL), tmp_path, **KW).fit(2)


def test_resume_gives_identical_results(env, tmp_path):
    full_agent, _ = _train(env, tmp_path / "full", 8)
    _train(env, tmp_path / "part", 4)
    # simulate an interruption after the checkpoint: a stray log row and no final/
    with open(tmp_path / "part" / "train_log.csv", "a") as f:
        f.write("4,2,0,0,1,1,0,0.0,0,0,0,0,0,0\n")
    resumed_agent, trainer = _train(env, tmp_path / "part", 8, resume=True)
    assert trainer.episodes_done_ == 8
    full = pd.read_csv(tmp_path / "full" / "train_log.csv")
    part = pd.read_csv(tmp_path / "part" / "train_log.csv")
    pd.testing.assert_frame_equal(full, part)
    assert all(torch.equal(a, b) for a, b in zip(_weights(full_agent), _weights(resumed_agent)))
    assert full.decisions.sum() > 0  # the learners did decide (and were updated)


@pytest.mark.slow
def test_workers_give_identical_results(env, tmp_path):
    a1, _ = _train(env, tmp_path / "w1", 4)
    a2, _ = _train(env, tmp_path / "w2", 4, workers=2)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "w1" / "train_log.csv"),
                                  pd.read_csv(tmp_path / "w2" / "train_log.csv"))  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(_weights(a1), _weights(a2)))


def test_resume_without_checkpoint_is_a_user_error(env, tmp_path):
    with pytest.raises(UserError, match="no checkpoint"):
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "ep000001").mkdir()
        Trainer(HierarchicalAgent(env, config=SMALL), tmp_path, **{**KW, "resume": True}).fit(2)


@pytest.mark.parametrize(
    "content, message",
    [("{oops", "malformed JSON"), ('{"format": 1, "clusters": [{"substations": [0], "lines": [0]}]}', "in no cluster"),
     ('{"format": 1, "clusters": [{"substations": [0, 99], "lines": [0]}]}', "unknown substations")],
)  # fmt: skip
def test_cli_bad_factorization(tmp_path, capsys, content, message):
    path = tmp_path / "f.json"
    path.write_text(content)
    code = cli.run(
        main, ["--factorization", str(path), "--episodes", "1", "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_cli_trains_and_resumes(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["--thermal-limit-scale", "0.85", "--episodes", "2", "--episodes-per-update", "2", "--max-start", "540",
            "--out", str(out), "--no-progress", "--seed", "3"]  # fmt: skip
    assert cli.run(main, args) == 0
    assert cli.run(main, args) == 2 and "--resume" in capsys.readouterr().err
    assert cli.run(main, [*args[:3], "4", *args[4:], "--resume"]) == 0
    assert len(pd.read_csv(out / "train_log.csv")) == 4
    with pytest.raises(SystemExit) as exc:  # argparse: one-line error, exit 2
        cli.run(main, [*args, "--scenarios", "bogus"])
    assert exc.value.code == 2 and "unknown split bogus" in capsys.readouterr().err


class _RandomClusterPolicy(LoopAgent):
    """The hierarchical rules with a uniformly random choice among the legal actions."""

    def __init__(self, agent, seed):
        super().__init__(agent.action_space, agent.controller)
        self.agent, self.rng = agent, np.random.default_rng(seed)

    def decide(self, observation, turn, *, deterministic=True, rng=None):
        cv = self.agent.decomposition.clusters[turn.cluster]
        legal = np.flatnonzero(cv.action_mask(turn.substation))
        a = int(self.rng.choice(legal))
        return cv.action_set.to_grid2op(a), Decision(cv.name, a, turn.substation, turn.cluster)


def _survived(env, policy, scenarios, seed):
    total = 0
    for k, scenario in enumerate(scenarios):
        loop = DecisionLoop(env, policy.controller)
        loop.reset(seed=seed + k, options={"time serie id": scenario, "init ts": 300})
        play(loop, policy)
        total += loop.steps - int(loop.terminated)
    return total


@pytest.mark.slow
def test_trained_policy_beats_a_random_one_on_the_grid(env, tmp_path):
    """Imitation (local greedy expert + DAgger) then PPO on case14-stress: the learned policy
    alone (no simulation at decision time) survives longer than a random choice among the
    same legal actions under the same rules, on the same held-out episode starts."""
    agent = HierarchicalAgent(env, config=PPOConfig(hidden=(64,), bc_temperature=0.02), seed=7)
    kw = {**KW, "scenarios": [0, 1], "max_start": 400, "seed": 7}
    Trainer(agent, tmp_path, **kw, imitation_episodes=4).fit(2)
    held_out = [2, 2]  # never trained on
    learned = _survived(env, agent, held_out, seed=100)
    randoms = [_survived(env, _RandomClusterPolicy(agent, s), held_out, seed=100) for s in (1, 2)]
    print("survived steps: learned", learned, "random", randoms)
    assert learned > max(randoms), (learned, randoms)


def test_cli_grid_scope_imitation_trains_every_cluster(tmp_path, capsys):
    """``--scope grid``: every cluster learns from every grid turn of the whole-grid teacher;
    the saved agent keeps its scope, revert level and teacher budget; a bad scope is refused
    with argparse's one-line error."""
    out = tmp_path / "g"
    args = ["--thermal-limit-scale", "0.85", "--episodes", "2", "--episodes-per-update", "2",
            "--max-start", "540", "--out", str(out), "--no-progress", "--seed", "3",
            "--scope", "grid", "--revert", "0.8", "--expert-budget", "8",
            "--imitation-episodes", "2"]  # fmt: skip
    assert cli.run(main, args) == 0
    agent = load_agent(out, make_env_for_cli())
    assert (agent.scope, agent.revert, agent.expert_budget) == ("grid", 0.8, 8)
    imitation = pd.read_csv(out / "imitation_log.csv")
    assert (imitation["mode"] == "expert").all() and len(imitation) == 2
    with pytest.raises(SystemExit) as exc:
        cli.run(main, [*args, "--scope", "area"])
    assert exc.value.code == 2 and "--scope" in capsys.readouterr().err


def make_env_for_cli():
    from distributed_grid2op.envs import make_env

    return make_env("l2rpn_case14_sandbox", thermal_limit_scale=0.85)
