"""Continuous action sets: redispatch, curtailment and storage of a cluster's own units.

One box set per cluster over the units it owns (format 2 of ``factorization.json``): one
coordinate per dispatchable generator (redispatch), per renewable generator (curtailment
limit) and per storage unit (set-point), in that order, any subset of the three kinds. The
learner's output is a vector in [-1, 1]^d; `ContinuousActionSet.to_grid2op` maps it, for the
current observation, onto values that grid2op always accepts:

- **redispatch** of a running dispatchable generator ``g`` (MW added to its target
  dispatch): within ``[-gen_max_ramp_down, gen_max_ramp_up]``, such that both its production
  (``gen_p + delta``) and its scheduled production plus the new target dispatch
  (``gen_p - actual_dispatch + target_dispatch + delta``) stay in
  ``[max(pmin, RUNNING_MW), pmax]`` (the lower end no higher than ``gen_p``: a running
  generator is never switched off, that could break its minimum up time), and ``|target_dispatch + delta| <= pmax - pmin``. A generator
  that is off (``gen_p <= OFF_MW``) is not redispatched (grid2op refuses it unless
  ``ALLOW_DISPATCH_GEN_SWITCH_OFF``, and switching it on may break its minimum down time).
  0 maps to "no change", -1 / +1 to the lowest / highest legal delta;
- **curtailment** of a renewable generator: the limit ``(x + 1) / 2`` in [0, 1] (a fraction
  of ``pmax``; +1: no curtailment);
- **storage** power of a unit (MW, > 0 charges): within ``[-storage_max_p_prod,
  storage_max_p_absorb]`` and such that its charge after the step, ``storage_charge +
  p * h * storage_charging_efficiency`` (``p > 0``) or ``storage_charge + p * h /
  storage_discharging_efficiency`` (``p < 0``), stays in ``[storage_Emin, storage_Emax]``
  (``h`` = step length in hours; the efficiencies count when the env's
  ``ACTIVATE_STORAGE_LOSS`` is on); 0 maps to 0.

Curtailment and storage change the power the dispatchable generators must make up; a
dispatch that cannot follow is a game over. `legal_action` moves the cluster's curtailment
limits and storage set-points back towards their current values (the limits in force, the
power each storage unit makes now within its legal range: the least change; one factor for
all of them) until the extra generation they need is within ``MARGIN_SHARE`` of what the
running dispatchable generators can still ramp beyond the move their own schedule makes at
the next step (`dispatch_margin`, from the forecast; the rest is left for forecast errors):
on generated ``l2rpn_idf_2023`` scenarios whose schedule ramped down at nearly full speed, a
storage discharge of 16 MW that fitted the bare ramps ended the episode. Scaling storage back towards 0 MW instead would stop a discharging unit at once and
put its power on the generators: measured on ``educ_case14_storage``, a game over of the
dispatch (``ImpossibleRedispatching``) when two units producing 12 MW were set to 0. It does so
whatever the env's ``LIMIT_INFEASIBLE_CURTAILMENT_STORAGE_ACTION``: grid2op's own limiter
only cancels the change of the step, and releasing earlier curtailment can still leave the
generators unable to ramp down (measured on ``l2rpn_idf_2023``: a game over of the dispatch
after full curtailment then its release, with that parameter on).

`legal_action` is the one home of these bounds: the box set and the optimisation expert
(`distributed_grid2op.opf`) both build their grid2op actions with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from grid2op.Exceptions import NoForecastAvailable
from gymnasium import spaces

from distributed_grid2op.action_sets import ACTION_SETS, ActionSet
from distributed_grid2op.errors import UserError

#: the three continuous kinds, in the order of a box set's coordinates
KINDS = ("redispatch", "curtailment", "storage")
#: the grid2op action key of each kind
ACTION_KEYS = {"redispatch": "redispatch", "curtailment": "curtail", "storage": "set_storage"}
#: a generator producing at most this (MW) is off
OFF_MW = 1e-3
#: redispatch keeps a running generator at least this far above 0 MW (never switched off)
RUNNING_MW = 1.0
#: share of the running dispatchable generators' ramp margin that curtailment and storage
#: changes may use
MARGIN_SHARE = 0.5
#: scaling factors tried, largest first, when curtailment / storage must be scaled back
_SCALES = np.linspace(1.0, 0.0, 41)


def supported_kinds(env) -> tuple[str, ...]:
    """The continuous kinds the env's action space accepts and its grid has units for."""
    cls = type(env)
    keys = env.action_space.actionClass.authorized_keys
    dispatch = bool(cls.redispatching_unit_commitment_availble)
    have = {
        "redispatch": dispatch and bool(np.any(cls.gen_redispatchable)),
        "curtailment": dispatch and bool(np.any(cls.gen_renewable)),
        "storage": cls.n_storage > 0,
    }
    return tuple(k for k in KINDS if have[k] and ACTION_KEYS[k] in keys)


def step_hours(obs) -> float:
    """Length of one step in hours (``obs.delta_time`` is in minutes)."""
    return float(obs.delta_time) / 60.0


@dataclass(frozen=True)
class EnvRules:
    """The env parameters the legal ranges depend on.

    Args:
        storage_losses: ``ACTIVATE_STORAGE_LOSS``: the storage efficiencies apply.
    """

    storage_losses: bool = True

    @classmethod
    def from_env(cls, env) -> EnvRules:
        return cls(storage_losses=bool(env.parameters.ACTIVATE_STORAGE_LOSS))


def redispatch_bounds(obs) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest legal redispatch (MW) of every generator now, shape (n_gen,) each
    (0, 0 for generators that are not dispatchable or are off; see the module docstring)."""
    cls = type(obs)
    p = np.asarray(obs.gen_p, dtype=float)
    target = np.asarray(obs.target_dispatch, dtype=float)
    scheduled = p - np.asarray(obs.actual_dispatch, dtype=float)
    pmin, pmax = cls.gen_pmin.astype(float), cls.gen_pmax.astype(float)
    floor = np.minimum(np.maximum(pmin, RUNNING_MW), p)  # never asks below what runs now
    down, up = cls.gen_max_ramp_down.astype(float), cls.gen_max_ramp_up.astype(float)
    span = pmax - pmin
    lo = np.maximum.reduce([-down, floor - p, floor - scheduled - target, -span - target])
    hi = np.minimum.reduce([up, pmax - p, pmax - scheduled - target, span - target])
    movable = cls.gen_redispatchable & (p > OFF_MW) & (lo <= hi)
    lo, hi = np.where(movable, lo, 0.0), np.where(movable, hi, 0.0)
    return np.clip(lo, -down, up), np.clip(hi, -down, up)


def storage_bounds(obs, losses: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Lowest (<= 0, producing) and highest (>= 0, charging) legal storage power (MW) now,
    shape (n_storage,) each: power limits and the energy the unit can still take or give
    (through its efficiencies when ``losses``, the env's ``ACTIVATE_STORAGE_LOSS``)."""
    cls = type(obs)
    h = step_hours(obs)
    charge = np.asarray(obs.storage_charge, dtype=float)
    eff_in, eff_out = cls.storage_charging_efficiency, cls.storage_discharging_efficiency
    if not losses:
        eff_in, eff_out = np.ones(cls.n_storage), np.ones(cls.n_storage)
    room = np.maximum(cls.storage_Emax - charge, 0.0) / (h * eff_in)
    stock = np.maximum(charge - cls.storage_Emin, 0.0) * eff_out / h
    hi = np.minimum(cls.storage_max_p_absorb.astype(float), room)
    lo = -np.minimum(cls.storage_max_p_prod.astype(float), stock)
    return lo, hi


def schedule_move(obs) -> np.ndarray:
    """Expected change (MW) of each dispatchable generator's schedule (its production without
    redispatch, ``gen_p - actual_dispatch``) at the next step, from the observation's forecast
    of horizon 1; 0 for the others and when the observation has no forecast. Shape (n_gen,)."""
    cls = type(obs)
    zero = np.zeros(cls.n_gen)
    get = getattr(obs, "get_forecasted_inj", None)
    if get is None:
        return zero
    try:
        forecast = np.asarray(get(time_step=1)[0], dtype=float)
    except NoForecastAvailable:
        return zero
    if forecast.shape != zero.shape:
        return zero
    scheduled = np.asarray(obs.gen_p, dtype=float) - np.asarray(obs.actual_dispatch, dtype=float)
    move = forecast - scheduled
    return np.where(cls.gen_redispatchable & np.isfinite(move), move, 0.0)


def dispatch_margin(obs) -> tuple[float, float]:
    """How much extra generation the running dispatchable generators can still give at the
    next step, in MW: ``(down, up)``, summed over generators, within their ramps and
    pmin / pmax, beyond what their own schedule already moves them (`schedule_move`: a
    schedule that ramps down at full speed leaves no room to take more generation off)."""
    cls = type(obs)
    p = np.asarray(obs.gen_p, dtype=float)
    on = cls.gen_redispatchable & (p > OFF_MW)
    move = schedule_move(obs)
    up = np.maximum(np.minimum(cls.gen_max_ramp_up, cls.gen_pmax - p), 0.0) - move
    down = np.minimum(np.maximum(-cls.gen_max_ramp_down, cls.gen_pmin - p), 0.0) - move
    return float(np.sum(down[on])), float(np.sum(up[on]))


def curtailed_mw(obs, limits: np.ndarray | None = None) -> np.ndarray:
    """Power (MW) each generator loses to curtailment at its current available power under
    ``limits`` (fractions of pmax, shape (n_gen,); default: the observation's limits)."""
    cls = type(obs)
    avail = np.asarray(obs.gen_p_before_curtail, dtype=float)
    lim = np.asarray(obs.curtailment_limit if limits is None else limits, dtype=float)
    cut = np.maximum(avail - lim * cls.gen_pmax, 0.0)
    return np.where(cls.gen_renewable & (np.abs(lim - 1.0) >= 1e-7), cut, 0.0)


@dataclass(frozen=True)
class UnitValues:
    """Physical set-points of some units: ids and values per kind (redispatch MW,
    curtailment limit in [0, 1], storage MW). Units not listed are left alone."""

    redispatch: tuple[np.ndarray, np.ndarray] = (np.zeros(0, int), np.zeros(0))
    curtailment: tuple[np.ndarray, np.ndarray] = (np.zeros(0, int), np.zeros(0))
    storage: tuple[np.ndarray, np.ndarray] = (np.zeros(0, int), np.zeros(0))


def _pairs(ids, values) -> list[tuple[int, float]]:
    return [(int(i), float(v)) for i, v in zip(ids, values)]


def legal_action(action_space, obs, values: UnitValues, rules: EnvRules = EnvRules(), *,
                 fit_margin: bool = True):  # fmt: skip
    """The grid2op action setting ``values``, each moved into its legal range for ``obs``
    under the env's ``rules`` (see the module docstring); with ``fit_margin``, curtailment
    and storage are scaled back towards doing nothing until the dispatch can follow.
    Returns ``(action, legal UnitValues)``."""
    cls = type(obs)
    g, r = values.redispatch
    lo, hi = redispatch_bounds(obs)
    r = np.clip(np.asarray(r, dtype=float), lo[g], hi[g])
    c, lim = values.curtailment
    lim = np.clip(np.asarray(lim, dtype=float), 0.0, 1.0)
    s, p = values.storage
    slo, shi = storage_bounds(obs, rules.storage_losses)
    p = np.clip(np.asarray(p, dtype=float), slo[s], shi[s])
    if fit_margin and (len(c) or len(s)):
        p_now = np.clip(np.asarray(obs.storage_power, dtype=float)[s], slo[s], shi[s])
        lim, p = _fit_margin(obs, c, lim, s, p, p_now)
    legal = UnitValues((g, r), (c, lim), (s, p))
    act = {}
    if len(g):
        act["redispatch"] = _pairs(g, r)
    if len(c):
        act["curtail"] = _pairs(c, lim)
    if len(s) and cls.n_storage:
        act["set_storage"] = _pairs(s, p)
    return action_space(act), legal


def _fit_margin(obs, c, lim, s, p, p_now) -> tuple[np.ndarray, np.ndarray]:
    """Scale the changes of the curtailment limits (from the current ones) and storage powers
    (from ``p_now``, their current powers made legal) by the largest factor whose extra
    generation need fits the margin."""
    down, up = dispatch_margin(obs)
    down, up = MARGIN_SHARE * down, MARGIN_SHARE * up
    lim0 = np.asarray(obs.curtailment_limit, dtype=float)
    cut0 = float(np.sum(curtailed_mw(obs)))
    # next step, storage units not set by an action go back to 0 MW, the others start from
    # p_now (> 0 charging: more generation needed)
    fixed = float(np.sum(p_now)) - float(np.sum(np.asarray(obs.storage_power, dtype=float)))
    limits = np.tile(lim0, (len(_SCALES), 1))
    limits[:, c] = lim0[c] + _SCALES[:, None] * (lim[None, :] - lim0[c])
    cut = np.array([np.sum(curtailed_mw(obs, row)) for row in limits]) - cut0
    need = fixed + cut + _SCALES * float(np.sum(p - p_now))
    excess = np.maximum(need - up, 0.0) + np.maximum(down - need, 0.0)
    fits = np.flatnonzero(excess <= 1e-9)
    k = int(fits[0]) if fits.size else int(np.argmin(excess))
    return limits[k, c], p_now + _SCALES[k] * (p - p_now)


def _spread(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Map x in [-1, 1] onto [lo, hi]: 0 -> 0 when 0 is in the range (-1 -> lo, +1 -> hi,
    linear on each side), else affinely."""
    x = np.clip(x, -1.0, 1.0)
    centred = np.where(x >= 0.0, x * hi, -x * lo)
    affine = lo + (x + 1.0) / 2.0 * (hi - lo)
    return np.where((lo <= 0.0) & (hi >= 0.0), centred, affine)


class ContinuousActionSet(ActionSet):
    """A box over some units (kind ``"box"``): redispatch of the dispatchable generators, curtailment limits
    of the renewable generators and set-points of the storage units (module docstring).

    Args:
        action_space: the env's action space.
        redispatch: ids of the generators redispatched (coordinates first).
        curtailment: ids of the renewable generators curtailed (next).
        storage: ids of the storage units (last).
        rules: the env parameters the legal ranges depend on (`EnvRules`).
    """

    kind = "box"  # the kind box learners take (SAC's registration)

    def __init__(self, action_space, redispatch=(), curtailment=(), storage=(), *,
                 rules: EnvRules = EnvRules()):  # fmt: skip
        self.action_space = action_space
        self.redispatch = np.asarray(redispatch, dtype=np.int64).reshape(-1)
        self.curtailment = np.asarray(curtailment, dtype=np.int64).reshape(-1)
        self.storage = np.asarray(storage, dtype=np.int64).reshape(-1)
        self.rules = rules
        if self.n == 0:
            raise UserError("a continuous action set needs at least one unit to control")

    @classmethod
    def from_env(cls, env, generators=None, storages=None, kinds=None, *,
                 required: bool = True) -> ContinuousActionSet | None:  # fmt: skip
        """The box over ``generators`` and ``storages`` (default: every unit of the grid; a
        cluster passes its own, `factorization_file.Cluster`) for ``kinds`` (default: what
        the env supports, `supported_kinds`). Units of none of ``kinds``: a `UserError`, or
        None when not ``required`` (a cluster without such units)."""
        supported = supported_kinds(env)
        kinds = supported if kinds is None else tuple(kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            raise UserError(f"unknown continuous kind(s) {unknown}; choose from {list(KINDS)}")
        missing = [k for k in kinds if k not in supported]
        if missing:
            raise UserError(
                f"env {env.env_name!r} does not support {', '.join(missing)} actions "
                f"(it supports: {', '.join(supported) or 'none'})"
            )
        gcls = type(env)
        gens = np.arange(gcls.n_gen) if generators is None else _unit_ids(generators, gcls.n_gen,
                                                                          "generator")  # fmt: skip
        stos = (
            np.arange(gcls.n_storage)
            if storages is None
            else _unit_ids(storages, gcls.n_storage, "storage unit")
        )
        ids = (
            gens[gcls.gen_redispatchable[gens]] if "redispatch" in kinds else (),
            gens[gcls.gen_renewable[gens]] if "curtailment" in kinds else (),
            stos if "storage" in kinds else (),
        )
        if not required and not any(len(i) for i in ids):
            return None
        return cls(env.action_space, *ids, rules=EnvRules.from_env(env))

    @property
    def n(self) -> int:
        return len(self.redispatch) + len(self.curtailment) + len(self.storage)

    @property
    def space(self) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, shape=(self.n,), dtype=np.float32)

    def mask(self, substation: int = -1) -> None:
        """None: every value of the box is made legal by the translation."""
        return None

    def values(self, choice, observation) -> UnitValues:
        """The physical set-points of ``choice`` for ``observation`` (before the margin)."""
        x = np.asarray(choice, dtype=float).reshape(-1)
        if x.shape != (self.n,) or not np.all(np.isfinite(x)):
            raise UserError(f"a continuous choice is {self.n} finite numbers, got {x.shape}")
        a, b = len(self.redispatch), len(self.redispatch) + len(self.curtailment)
        lo, hi = redispatch_bounds(observation)
        slo, shi = storage_bounds(observation, self.rules.storage_losses)
        g, s = self.redispatch, self.storage
        return UnitValues(
            (g, _spread(x[:a], lo[g], hi[g])),
            (self.curtailment, (np.clip(x[a:b], -1.0, 1.0) + 1.0) / 2.0),
            (s, _spread(x[b:], slo[s], shi[s])),
        )

    def to_grid2op(self, choice, observation=None):
        """The grid2op action of ``choice`` (a vector in [-1, 1]^n) for ``observation``."""
        if observation is None:
            raise UserError("a continuous action set needs the observation to translate")
        action, _ = legal_action(self.action_space, observation, self.values(choice, observation),
                                 self.rules)  # fmt: skip
        return action

    def describe(self) -> dict:
        return {"kind": self.kind, "size": self.n, "redispatch": self.redispatch.tolist(),
                "curtailment": self.curtailment.tolist(), "storage": self.storage.tolist()}  # fmt: skip


def joint_action(action_sets, choices, observation):
    """One grid2op action for the ``choices`` of several box sets over disjoint units (the
    clusters' continuous agents): their set-points (`ContinuousActionSet.values`) merged and
    made legal together by `legal_action`, so that the dispatch margin is shared by all of
    them, not granted to each. With one set it is that set's `to_grid2op`."""
    sets = list(action_sets)
    if not sets:
        raise UserError("a joint continuous action needs at least one action set")
    parts = [s.values(c, observation) for s, c in zip(sets, choices, strict=True)]
    merged = UnitValues(*(
        (np.concatenate([getattr(p, k)[0] for p in parts]).astype(np.int64),
         np.concatenate([np.asarray(getattr(p, k)[1], dtype=float) for p in parts]))
        for k in KINDS
    ))  # fmt: skip
    action, _ = legal_action(sets[0].action_space, observation, merged, sets[0].rules)
    return action


def _unit_ids(ids, size: int, what: str) -> np.ndarray:
    out = np.asarray(list(ids), dtype=np.int64).reshape(-1)
    bad = out[(out < 0) | (out >= size)]
    if bad.size:
        raise UserError(f"unknown {what} id(s) {bad.tolist()} (the grid has {size})")
    return out


ACTION_SETS[ContinuousActionSet.kind] = ContinuousActionSet
