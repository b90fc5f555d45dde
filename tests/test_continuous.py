"""Continuous action sets: any network output maps to an action grid2op accepts (never
illegal, ambiguous, or an infeasible dispatch), along episodes of a 14-bus grid with storage
and of the 118-bus grid with curtailment; bounds on crafted states; bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from grid2op.Exceptions import AmbiguousAction, IllegalAction

from distributed_grid2op.action_sets import ACTION_SETS, TopologyActionSet
from distributed_grid2op.agents.learners import learner_entry
from distributed_grid2op.continuous import (
    ContinuousActionSet,
    UnitValues,
    legal_action,
    redispatch_bounds,
    storage_bounds,
    supported_kinds,
)
from distributed_grid2op.envs import make_env
from distributed_grid2op.errors import UserError
from distributed_grid2op.factorization_file import load_factorization


@pytest.fixture(scope="module")
def idf_env():
    env = make_env("l2rpn_idf_2023", seed=0)
    yield env
    env.close()


def _problems(info) -> list:
    """What makes an action refused or a game over of the dispatch."""
    out = [e for e in info["exception"] if isinstance(e, IllegalAction | AmbiguousAction)]
    for key in ("is_illegal", "is_ambiguous", "failed_redispatching"):
        if info[key]:
            out.append(key)
    return out


def _outputs(rng, n: int, k: int) -> list[np.ndarray]:
    """Extremes (all +1, all -1, 0, random signs) and ``k`` uniform draws in [-1, 1]^n."""
    fixed = [np.ones(n), -np.ones(n), np.zeros(n), rng.choice([-1.0, 1.0], n)]
    return fixed + [rng.uniform(-1.0, 1.0, n) for _ in range(k)]


def _walk(env, sets, rng, steps: int, k: int) -> dict:
    """Along one episode: every output of every set is checked on the state (its own
    ambiguity check and a simulation of the step), then one of them is played: all +1 for the
    first third of the steps, all -1 for the second (pushing the units to their limits, where
    ramps-only bounds fail within 6 steps), a random one after. Returns the sums of the
    absolute set-points the translations asked for (they must not be all 0)."""
    obs = env.reset(options={"time serie id": 0})
    moved = {"redispatch": 0.0, "curtail": 0.0, "storage": 0.0}
    for t in range(steps):
        played, phase = None, 3 * t // steps
        for aset in sets:
            for i, x in enumerate(_outputs(rng, aset.n, k)):
                act = aset.to_grid2op(x.astype(np.float32), obs)
                ambiguous, exc = act.is_ambiguous()
                assert not ambiguous, exc
                *_, info = obs.simulate(act, time_step=1)
                assert not _problems(info), (x, _problems(info))
                moved["redispatch"] += float(np.abs(act.redispatch).sum())
                moved["curtail"] += float(np.sum(1.0 - act.curtail[act.curtail >= 0]))
                moved["storage"] += float(np.abs(act.storage_p).sum())
                if aset is sets[0] and (phase == i or (phase == 2 and i == 4)):
                    played = act
        obs, _, done, info = env.step(played)
        assert not _problems(info) and not done, _problems(info)
    return moved


def test_every_output_is_legal_along_a_case14_storage_episode(storage_env):
    """The whole grid's set and each thesis cluster's own set (units by substation)."""
    env = storage_env
    assert supported_kinds(env) == ("redispatch", "storage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # partition made for the sandbox
        fact = load_factorization(env=env)
    cls = type(env)
    fact = fact.with_units(cls.gen_to_subid, cls.storage_to_subid)
    sets = [ContinuousActionSet.from_env(env)] + [
        ContinuousActionSet.from_env(env, c.generators, c.storages) for c in fact.clusters
    ]
    assert sum(s.n for s in sets[1:]) == sets[0].n == 5  # 3 dispatchable + 2 storage units
    moved = _walk(env, sets, np.random.default_rng(0), steps=30, k=3)
    assert moved["redispatch"] > 0 and moved["storage"] > 0


def test_every_output_is_legal_on_the_118_bus_grid(idf_env):
    """Redispatch (20 generators), curtailment (42) and storage (7), a few steps."""
    env = idf_env
    aset = ContinuousActionSet.from_env(env)
    assert aset.n == 20 + 42 + 7
    moved = _walk(env, [aset], np.random.default_rng(1), steps=3, k=2)
    assert moved["redispatch"] > 0 and moved["curtail"] > 0 and moved["storage"] > 0


def test_every_output_is_legal_when_the_env_limits_curtailment_too():
    """With LIMIT_INFEASIBLE_CURTAILMENT_STORAGE_ACTION on, grid2op's limiter alone lets the
    release of the full curtailment played before be a game over; with the translation's
    margin it is not."""
    env = make_env("l2rpn_idf_2023", seed=0,
                   params={"LIMIT_INFEASIBLE_CURTAILMENT_STORAGE_ACTION": True})  # fmt: skip
    try:
        _walk(env, [ContinuousActionSet.from_env(env)], np.random.default_rng(2), steps=3, k=1)
    finally:
        env.close()


def test_full_curtailment_is_scaled_back_so_the_dispatch_can_follow(idf_env):
    """Curtailing every renewable generator to 0 is a game over of the dispatch unless the
    translation scales it back (what it does when the env does not limit it itself)."""
    env = idf_env
    obs = env.reset(options={"time serie id": 0})
    ren = np.flatnonzero(type(env).gen_renewable)
    values = UnitValues(curtailment=(ren, np.zeros(len(ren))))
    raw, _ = legal_action(env.action_space, obs, values, fit_margin=False)
    *_, info = obs.simulate(raw, time_step=1)
    assert info["failed_redispatching"]
    fitted, legal = legal_action(env.action_space, obs, values)
    *_, info = obs.simulate(fitted, time_step=1)
    assert not _problems(info)
    limits = legal.curtailment[1]
    assert np.all(limits >= 0) and np.any(limits < 1)  # curtailed, less than asked


def test_bounds_on_crafted_states(storage_env):
    env = storage_env
    cls = type(env)
    obs = env.reset(options={"time serie id": 0})
    full = obs.copy()
    full.storage_charge = cls.storage_Emax.copy()
    lo, hi = storage_bounds(full)
    assert np.all(hi == 0) and np.all(lo < 0)
    empty = obs.copy()
    empty.storage_charge = cls.storage_Emin.copy()
    lo, hi = storage_bounds(empty)
    assert np.all(lo == 0) and np.all(hi > 0)
    # half a step of charging room: the power that fills it exactly, through the efficiency
    half = obs.copy()
    h = obs.delta_time / 60.0
    half.storage_charge = cls.storage_Emax - 0.5
    _, hi = storage_bounds(half)
    expected = np.minimum(0.5 / (h * cls.storage_charging_efficiency), cls.storage_max_p_absorb)
    np.testing.assert_allclose(hi, expected, rtol=1e-6)
    low = obs.copy()
    low.storage_charge = cls.storage_Emin + 0.5
    lo, _ = storage_bounds(low)
    out = 0.5 * cls.storage_discharging_efficiency / h  # [6, 5.4] MW
    np.testing.assert_allclose(lo, -np.minimum(out, cls.storage_max_p_prod), rtol=1e-6)
    lo, _ = storage_bounds(low, losses=False)  # efficiencies off: the energy itself
    np.testing.assert_allclose(lo, -np.minimum(0.5 / h, cls.storage_max_p_prod), rtol=1e-6)
    assert lo[1] < -5.5

    g = int(np.flatnonzero(cls.gen_redispatchable)[0])
    at_max = obs.copy()
    at_max.gen_p[g] = cls.gen_pmax[g]
    lo, hi = redispatch_bounds(at_max)
    assert hi[g] <= 0 and lo[g] == -cls.gen_max_ramp_down[g]
    off = obs.copy()
    off.gen_p[g] = 0.0
    lo, hi = redispatch_bounds(off)
    assert lo[g] == hi[g] == 0
    assert np.all(lo[~cls.gen_redispatchable] == 0) and np.all(hi[~cls.gen_redispatchable] == 0)
    # 0 means no change; +1 / -1 the ends of the legal range
    aset = ContinuousActionSet.from_env(env, kinds=["redispatch"])
    lo, hi = redispatch_bounds(obs)
    r = aset.redispatch
    np.testing.assert_allclose(aset.values(np.zeros(aset.n), obs).redispatch[1], 0.0)
    np.testing.assert_allclose(aset.values(np.ones(aset.n), obs).redispatch[1], hi[r])
    np.testing.assert_allclose(aset.values(-np.ones(aset.n), obs).redispatch[1], lo[r])


def test_registered_and_bad_input_is_a_user_error(storage_env):
    env = storage_env
    assert ACTION_SETS["box"] is ContinuousActionSet
    assert ContinuousActionSet.kind in learner_entry("sac").action_kinds
    topo = TopologyActionSet([env.action_space()], [-1])
    assert topo.to_grid2op(0, env.reset()) == env.action_space()  # the observation is ignored
    aset = ContinuousActionSet.from_env(env)
    assert aset.mask() is None and aset.space.shape == (aset.n,)
    obs = env.reset()
    with pytest.raises(UserError, match="5 finite numbers"):
        aset.to_grid2op(np.zeros(4), obs)
    with pytest.raises(UserError, match="5 finite numbers"):
        aset.to_grid2op(np.full(5, np.nan), obs)
    with pytest.raises(UserError, match="needs the observation"):
        aset.to_grid2op(np.zeros(5))
    with pytest.raises(UserError, match="does not support curtailment"):
        ContinuousActionSet.from_env(env, kinds=["curtailment"])
    with pytest.raises(UserError, match="unknown continuous kind"):
        ContinuousActionSet.from_env(env, kinds=["topology"])
    with pytest.raises(UserError, match=r"unknown generator id\(s\) \[6\]"):
        ContinuousActionSet.from_env(env, generators=[6])
    with pytest.raises(UserError, match="at least one unit"):
        ContinuousActionSet.from_env(env, generators=[2], storages=[])  # 2: renewable


class _Grid:
    """Class attributes of a crafted 3-generator grid (what `cost` reads from ``type(obs)``)."""

    gen_cost_per_MW = np.array([40.0, 0.0, 70.0])


class _Obs(_Grid):
    def __init__(self, **values):
        base = dict(delta_time=5.0, actual_dispatch=np.zeros(3), curtailment_mw=np.zeros(3),
                    gen_p=np.zeros(3), load_p=np.zeros(2), storage_power=np.zeros(1),
                    rho=np.zeros(4))  # fmt: skip
        self.__dict__.update({**base, **{k: np.asarray(v, dtype=float) for k, v in values.items()}})


def test_cost_terms_on_crafted_values():
    """Trapezoid over the step (h = 5 min = 1/12 h), currency for priced generators."""
    from distributed_grid2op.cost import DEFAULT_WEIGHTS, cost_reward, step_costs

    a = _Obs(actual_dispatch=[12.0, -5.0, 0.0], curtailment_mw=[0, 0, 6.0],
             gen_p=[100.0, 50.0, 20.0], load_p=[100.0, 60.0], storage_power=[4.0],
             rho=[0.5, 1.3, 0.9, 2.0])  # fmt: skip
    b = _Obs(actual_dispatch=[-12.0, 0.0, 6.0], curtailment_mw=[0, 0, 18.0],
             gen_p=[100.0, 50.0, 30.0], load_p=[100.0, 70.0], storage_power=[-2.0],
             rho=[1.1, 1.0, 0.2, 1.25])  # fmt: skip
    t = step_costs(a, b)
    h = 5.0 / 60.0
    assert t["redispatch"] == pytest.approx(h * (12 * 40 + (12 * 40 + 6 * 70)) / 2)  # gen 1: free
    assert t["curtailment"] == pytest.approx(h * (6 + 18) / 2)
    assert t["losses"] == pytest.approx(h * ((170 - 160 - 4) + (180 - 170 + 2)) / 2)
    assert t["storage"] == pytest.approx(h * (4 + 2) / 2)
    assert t["overload"] == pytest.approx(0.1 + 0.25)  # next state only
    expected = -sum(DEFAULT_WEIGHTS[k] * v for k, v in t.items())
    assert cost_reward(a, b) == pytest.approx(expected)
    only = {k: 0.0 for k in DEFAULT_WEIGHTS} | {"overload": 2.0}
    assert cost_reward(a, b, only) == pytest.approx(-0.7)
    with pytest.raises(UserError, match="unknown cost term"):
        cost_reward(a, b, {"co2": 1.0})


def test_unpriced_redispatch_is_counted_in_mwh():
    from distributed_grid2op.cost import redispatch_priced, step_costs

    class Unpriced(_Obs):
        gen_cost_per_MW = np.zeros(3)

    a, b = Unpriced(actual_dispatch=[6.0, -6.0, 0.0]), Unpriced(actual_dispatch=[0.0, 0.0, 0.0])
    assert not redispatch_priced(a) and redispatch_priced(_Obs())
    assert step_costs(a, b)["redispatch"] == pytest.approx(5.0 / 60.0 * 12.0 / 2)
