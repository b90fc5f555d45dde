"""PettingZoo parallel and gymnasium views of the continuous agents (every-step redispatch and
storage set-points on educ_case14_storage): API checkers, legality of any action in the
spaces, seeding, the rules' steps and the topology policy's turns."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from distributed_grid2op import cost
from distributed_grid2op.decomposed import DecomposedParallelEnv, Decomposition, UnitsGymEnv
from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import load_factorization

KINDS = ("redispatch", "storage")


def _factorization(env):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the thesis partition, made for the sandbox
        return load_factorization(env=env)


@pytest.fixture(scope="module")
def dec(storage_env):
    return Decomposition(storage_env, _factorization(storage_env), topology=False, continuous=KINDS)


def _random_actions(par, rng) -> dict:
    return {a: rng.uniform(-1, 1, par.action_space(a).shape).astype(np.float32) for a in par.agents}


def test_parallel_api(storage_env, dec):
    from pettingzoo.test import parallel_api_test

    par = DecomposedParallelEnv(storage_env, dec, scenarios=[0, 1])
    assert par.possible_agents == [dec.clusters[i].name for i in dec.unit_clusters]
    assert len(par.possible_agents) == 2  # both thesis clusters own units on this grid
    parallel_api_test(par, num_cycles=40)


def test_any_action_in_the_spaces_is_legal_and_seeded(storage_env, dec):
    """Random vectors, extreme corners included, never give an illegal or ambiguous grid2op
    action; the same seed and actions give the same observations and rewards."""
    storage_env.set_thermal_limit(storage_env.get_thermal_limit())  # unchanged limits

    def run(seed):
        par = DecomposedParallelEnv(storage_env, dec, scenarios=[0, 1, 2])
        obs, _ = par.reset(seed=seed)
        rng = np.random.default_rng(seed)
        trace, illegal = [], 0
        for t in range(60):
            acts = _random_actions(par, rng)
            if t % 3 == 0:  # corners of the box
                acts = {a: np.sign(v).astype(np.float32) for a, v in acts.items()}
            obs, rew, term, trunc, info = par.step(acts)
            some = next(iter(info.values()), None)
            if some is not None:
                illegal += some["illegal"]
                assert set(some["costs"]) == set(cost.TERMS)
            trace.append((sorted(rew.items()), [o.copy() for o in obs.values()]))
            if not par.agents:
                break
        return trace, illegal

    first, illegal = run(4)
    assert illegal == 0
    assert len(first) > 10
    again, _ = run(4)
    assert len(again) == len(first)
    for (r1, o1), (r2, o2) in zip(first, again):
        assert r1 == r2
        for a, b in zip(o1, o2):
            np.testing.assert_array_equal(a, b)


def test_rewards_are_the_step_cost_and_storage_follows_the_action(storage_env, dec):
    par = DecomposedParallelEnv(storage_env, dec, scenarios=[0])
    par.reset(seed=1)
    names = par.possible_agents
    owner = {a: dec.clusters[dec.unit_clusters[k]].units for k, a in enumerate(names)}
    acts = {}
    for a, units in owner.items():
        x = np.zeros(units.n, dtype=np.float32)
        x[len(units.redispatch) + len(units.curtailment) :] = 1.0  # charge every storage unit
        acts[a] = x
    before = par.loop.obs
    _, rew, term, _, info = par.step(acts)
    after = par.loop.obs
    assert not any(term.values())
    expected = cost.transition_reward(before, after, False, cost.cost_weights())
    assert list(rew.values()) == [pytest.approx(expected)] * len(names)
    assert np.all(np.asarray(after.storage_power) > 0)  # charging, as asked


def test_topology_policy_plays_the_danger_turns(storage_env):
    """With topology on, the rules' danger turns go to ``topology``; the continuous agents act
    at the same step."""
    storage_env.set_thermal_limit(storage_env.get_thermal_limit())
    dec = Decomposition(storage_env, _factorization(storage_env), continuous=KINDS)
    turns = []

    def topology(obs, turn):
        turns.append(turn)
        return storage_env.action_space()

    par = DecomposedParallelEnv(storage_env, dec, scenarios=[0], danger=0.05, topology=topology)
    par.reset(seed=0)
    _, _, _, _, info = par.step({a: np.zeros(par.action_space(a).shape, np.float32)
                                 for a in par.agents})  # fmt: skip
    assert len(turns) == 1 and turns[0].substation in dec.controllable
    assert next(iter(info.values()))["decision"] == "topology"


def test_gym_view_of_the_centralised_continuous_agent(storage_env):
    from gymnasium.utils.env_checker import check_env

    one = Decomposition(storage_env, _factorization(storage_env).centralized(), topology=False,
                        continuous=KINDS)  # fmt: skip
    genv = UnitsGymEnv(storage_env, one, scenarios=[0, 1])
    assert genv.action_space.shape == (one.clusters[0].units.n,)
    check_env(genv, skip_render_check=True)
    a, _ = genv.reset(seed=5)
    b, _ = genv.reset(seed=5)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(UserError, match="one cluster"):
        UnitsGymEnv(storage_env, Decomposition(storage_env, _factorization(storage_env),
                                               topology=False, continuous=KINDS))  # fmt: skip


def test_views_refuse_a_decomposition_without_continuous_agents(storage_env):
    topo_only = Decomposition(storage_env, _factorization(storage_env))
    with pytest.raises(UserError, match="no cluster has a continuous agent"):
        DecomposedParallelEnv(storage_env, topo_only)
