"""SAC (the continuous-control learner): it learns Pendulum, is seeded without global state,
round-trips its state, and is a registered learner for box action sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distributed_grid2op.agents.learners import LEARNERS, evaluate_gym, learner_entry
from distributed_grid2op.agents.sac import SACConfig, SACLearner, train_gym


@pytest.mark.slow
def test_sac_solves_pendulum():
    """Average return >= -200 (random: about -1200) after 5000 environment steps, seed 1."""
    torch.set_num_threads(1)
    learner = train_gym("Pendulum-v1", total_steps=5_000, seed=1)
    assert evaluate_gym(learner, "Pendulum-v1", episodes=5) >= -200.0


def _transitions(rng, n=300, n_obs=3, n_act=2):
    obs = rng.normal(size=(n, n_obs)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(n, n_act)).astype(np.float32)
    rew = -np.sum(act**2, axis=1)
    return obs, act, rew, np.roll(obs, -1, axis=0), np.zeros(n, np.float32)


def _run(seed):
    learner = SACLearner(3, -np.ones(2), np.ones(2), SACConfig(learning_starts=64, batch_size=32,
                                                               hidden=(16,)), seed=seed)  # fmt: skip
    learner.record(*_transitions(np.random.default_rng(0)))
    for _ in range(20):
        learner.update()
    return learner


def test_same_seed_same_learner_and_no_global_state():
    state = torch.random.get_rng_state()
    a, b, c = _run(4), _run(4), _run(5)
    assert torch.equal(torch.random.get_rng_state(), state)
    pa, pb, pc = (torch.cat([p.flatten() for p in x.actor.parameters()]) for x in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    obs = np.zeros(3, np.float32)
    action, logp, _ = a.act(obs)
    assert action.shape == (2,) and np.all(np.abs(action) <= 1.0) and np.isfinite(logp)


def test_state_round_trip_and_policy_state():
    a = _run(1)
    b = SACLearner(3, -np.ones(2), np.ones(2), a.config, seed=9)
    b.load_state_dict(a.state_dict())
    obs = np.ones(3, np.float32)
    np.testing.assert_array_equal(
        a.act(obs, deterministic=True)[0], b.act(obs, deterministic=True)[0]
    )
    c = SACLearner(3, -np.ones(2), np.ones(2), a.config, seed=9)
    c.load_policy_state(a.policy_state())
    np.testing.assert_array_equal(
        a.act(obs, deterministic=True)[0], c.act(obs, deterministic=True)[0]
    )
    assert a.alpha != 0.2  # the temperature was tuned


def test_registered_for_box_action_sets():
    entry = learner_entry("sac")
    assert entry.cls is SACLearner and entry.config is SACConfig and "box" in entry.action_kinds
    assert "topology" not in LEARNERS["sac"].action_kinds
    assert SACConfig.from_dict(SACConfig(hidden=(8, 8)).to_dict()) == SACConfig(hidden=(8, 8))
