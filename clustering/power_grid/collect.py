"""Collect (s, a, s') transitions per substation under the thesis' explorative policy.

For every substation, episodes are run in a fixed order; each episode ``e`` of substation
``sub`` plays chronic ``e mod n_scenarios`` with env and agent seeds derived from
``(seed, sub, e)`` only, so an episode is the same whatever the number of workers, the
shard it lands in, or how many episodes are asked for. The dataset of a substation is the
concatenation of its episodes in order, truncated at ``n_samples`` transitions.

Two modes:

- ``thesis``: at every step a uniformly random unitary set-bus topology of the substation
  (the first one, all elements on bus 1, is the do-nothing topology) is played with
  ``env.step``; a failed episode ends with grid2op's game-over observation (``rho`` = 0), a
  transition flagged ``terminal``.
- ``simulate``: follow a do-nothing (reconnect when possible) trajectory and, at each
  state, evaluate one random unitary topology of the substation with ``obs.simulate``: s'
  is the forecast next state after that action, the episode never ends because of it, and
  the states come from the grid's natural distribution. ``terminal`` flags a diverging
  simulation. An episode is a segment of ``max_steps`` (default 100) steps starting at a
  seeded uniformly random time step of its chronic, so that few chronics still give
  varied states. A segment whose start is a game over (the power flow of the do-nothing
  step that reaches it fails) is an empty episode.
- ``sensitivity``: the simulate-mode trajectory, but at each state ``obs.simulate`` is called
  once with do-nothing (the ``reference`` next state, stored with every transition) and for
  ``actions_per_state`` random topologies of the substation (one transition each). The
  difference ``next_state - reference`` is then the effect of the action alone (same state,
  same forecast), exact to the power-flow tolerance: a sensitivity vector, data only.

``actions_per_state`` (simulate and sensitivity modes, default 1) evaluates several random
topologies per visited state: the cost of the env step (and of the reference) is shared, so
samples/s approach ``obs.simulate`` calls/s.

With a reduced action set (``actions.json``, `CollectActionSet`), the random topology of a
substation is drawn from the file's actions of that substation instead (uniformly, same seeds),
and ``action_raw`` is the index among them (file order); only substations with actions in the
file are collected (the pipeline assigns the others like uncontrollable ones). The set's
content digest and scoring enter the fingerprint, so a resume with another set is refused.

Unit columns (continuous control, `CollectSettings.units`): a column per controllable unit,
named ``redispatch:<gen>``, ``curtailment:<gen>`` or ``storage:<unit>`` (`unit_key`). Its
episodes are those of a substation (same modes, seeds from ``(seed, kind, unit, episode)``,
own shards ``<mode>-<kind><id>-ep...``), but the explorative policy sets that one unit at
every step to a uniformly random value of its legal range for the current observation: a
redispatch of the generator within its ramps (`continuous.redispatch_bounds`), a curtailment
limit in [0, 1] of the renewable generator, a set-point of the storage unit
(`continuous.storage_bounds`), made legal by `continuous.legal_action` (curtailment and
storage scaled back until the dispatch can follow). Recorded per transition: ``requested``
(the target dispatch level after the step in MW, the curtailment limit as a fraction of
pmax, the storage set-point in MW) and ``applied``, what the grid actually did in the next
observation (``actual_dispatch`` MW, ``curtailment_mw`` MW curtailed, ``storage_power`` MW):
``applied``, rank-encoded, is the column's action variable (`Transitions.action`).

Work is cut in shards of ``episodes_per_shard`` consecutive episodes of one substation,
written atomically under a deterministic name; a rerun with the same settings skips the
shards that exist (resume), so no episode is ever duplicated or overwritten. Shards run as
tasks of a `distributed_grid2op.execution.Executor`: workers make their own env from the
`EnvSpec` and return the shard's arrays; only the driver writes files. The driver writes the
shards of a substation in episode order and only while the substation still needs samples:
a shard computed ahead (speculatively, by a free worker) that turns out to lie beyond the
sample budget is dropped, so the set of shard files is the same for any number of workers.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from distributed_grid2op.continuous import KINDS as UNIT_KINDS
from distributed_grid2op.envs import EnvSpec, quiet_grid2op
from distributed_grid2op.errors import UserError
from distributed_grid2op.execution import LOCAL, Executor, WorkerContext, available_cpus
from distributed_grid2op.io import atomic_path, write_json

MODES = ("thesis", "simulate", "sensitivity")
SHARD_FORMAT = 1
SETTINGS_FILE = "collection.json"
#: Steps of one simulate-mode episode (a do-nothing segment starting at a random time step).
SIMULATE_SEGMENT = 100
_ARRAYS = ("state", "next_state", "action_raw", "terminal", "episode_id", "step")
#: Extra per-transition array of sensitivity mode: the do-nothing simulation of the same state.
REFERENCE = "reference"
#: Extra per-transition arrays of a unit column: the value asked for and the value applied.
UNIT_ARRAYS = ("requested", "applied")
#: Second seed word of a unit column's episodes (above any substation id): ``+ kind index``.
UNIT_SEED_TAG = 1 << 20


def unit_key(kind: str, unit: int) -> str:
    """Name of the column of a unit: ``redispatch:3``, ``curtailment:2``, ``storage:0``."""
    return f"{kind}:{int(unit)}"


def parse_unit_key(key: str) -> tuple[str, int]:
    """(kind, unit id) of a unit column's name; `UserError` when it is not one."""
    kind, _, uid = str(key).partition(":")
    if kind not in UNIT_KINDS or not uid.isdigit():
        raise UserError(
            f"not a unit column {key!r}: expected <kind>:<id> with kind one of "
            f"{', '.join(UNIT_KINDS)}"
        )
    return kind, int(uid)


def unit_columns(env, kinds) -> list[str]:
    """The unit columns of ``kinds`` (continuous kinds) on ``env``'s grid: every dispatchable
    generator for redispatch, renewable one for curtailment, storage unit for storage
    (`continuous.ContinuousActionSet.from_env` selects them), in that order."""
    from distributed_grid2op.continuous import ContinuousActionSet

    kinds = tuple(k for k in UNIT_KINDS if k in kinds)
    if not kinds:
        return []
    box = ContinuousActionSet.from_env(env, kinds=kinds)
    return [unit_key(k, u) for k in kinds for u in getattr(box, k).tolist()]


def is_unit(column) -> bool:
    """Whether a collection column is a unit (a name) rather than a substation (an int)."""
    return isinstance(column, str)


@dataclass(frozen=True)
class CollectActionSet:
    """A reduced action set as values (it travels with the settings: workers need no disk).

    ``actions`` are ``(substation, set_bus)`` pairs in file order; ``digest`` hashes the
    file's content (without timings or path), ``scoring`` is how the set was chosen.
    """

    digest: str
    scoring: dict
    actions: tuple[tuple[int, tuple[int, ...]], ...]
    source: str = ""

    @classmethod
    def from_action_file(cls, action_file) -> CollectActionSet:
        """From a loaded `distributed_grid2op.actions.file.ActionFile`."""
        doc = action_file.to_dict()
        text = json.dumps(doc, sort_keys=True, default=str)
        return cls(
            digest=hashlib.sha1(text.encode()).hexdigest()[:16],
            scoring=dict(doc["scoring"]),
            actions=tuple(
                (int(a["substation"]), tuple(int(v) for v in a["set_bus"])) for a in doc["actions"]
            ),
            source=str(action_file.path),
        )

    @classmethod
    def load(cls, path, env=None) -> CollectActionSet:
        """Read ``actions.json`` (validated; with ``env``, checked against its grid)."""
        from distributed_grid2op.actions.file import load_action_file

        return cls.from_action_file(load_action_file(path, env=env))

    def substations(self) -> list[int]:
        """Substations with at least one action, increasing."""
        return sorted({s for s, _ in self.actions})

    def set_bus(self, sub: int) -> list[tuple[int, ...]]:
        """Set-bus vectors of the actions of ``sub`` (file order): what ``action_raw`` indexes."""
        return [v for s, v in self.actions if s == int(sub)]

    def topologies(self, env, sub: int) -> list:
        """The grid2op actions of ``sub`` (file order)."""
        return [
            env.action_space({"set_bus": {"substations_id": [(int(sub), list(v))]}})
            for v in self.set_bus(sub)
        ]

    def identity(self) -> dict:
        """What enters the collection fingerprint (not the path: a copied file is the same set)."""
        return {
            "digest": self.digest,
            "scoring": self.scoring,
            "n_actions": len(self.actions),
            "substations": self.substations(),
        }


@dataclass(frozen=True)
class CollectSettings:
    """What defines a collection (everything but its size enters the fingerprint).

    ``n_episodes`` and ``n_samples`` only say how many of the deterministic episodes are
    used, so a rerun with larger numbers extends an earlier collection.
    """

    spec: EnvSpec = field(default_factory=EnvSpec)
    substations: tuple[int, ...] = ()
    n_episodes: int = 1000
    n_samples: int = 50_000
    mode: str = "thesis"
    attributes: tuple[str, ...] = ("rho",)
    seed: int = 29
    max_steps: int | None = None
    episodes_per_shard: int | None = None
    #: A reduced action set: each substation's random topology is drawn from its actions.
    action_set: CollectActionSet | None = None
    #: Random topologies simulated per visited state (simulate and sensitivity modes).
    actions_per_state: int = 1
    #: Sensitivity mode: stop a substation's collection once its effect column is stable, a
    #: relative change below this between successive shards (`column_change`); None: collect
    #: ``n_samples``.
    stop_tolerance: float | None = None
    #: Unit columns (`unit_key` names) collected next to the substations.
    units: tuple[str, ...] = ()

    @property
    def columns(self) -> tuple:
        """What is collected, one dataset each: the substations, then the unit columns."""
        return (*self.substations, *self.units)

    def __post_init__(self):
        for key in self.units:
            parse_unit_key(key)
        if self.episodes_per_shard is None:  # short thesis episodes, long simulate segments
            object.__setattr__(self, "episodes_per_shard", 10 if self.mode == "thesis" else 2)
        if self.max_steps is None and self.mode != "thesis":
            object.__setattr__(self, "max_steps", SIMULATE_SEGMENT)
        if self.mode not in MODES:
            raise UserError(
                f"unknown collection mode {self.mode!r}; choose one of {', '.join(MODES)}"
            )
        if self.n_episodes < 1 or self.n_samples < 1:
            raise UserError("the number of episodes and of samples must be at least 1")
        if self.episodes_per_shard < 1:
            raise UserError("episodes_per_shard must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise UserError("max_steps must be at least 1 (or None for the chronic length)")
        if not self.attributes:
            raise UserError("at least one observation attribute is needed")
        if self.actions_per_state < 1:
            raise UserError("actions_per_state must be at least 1")
        if self.actions_per_state > 1 and self.mode == "thesis":
            raise UserError("actions_per_state > 1 needs --mode simulate or sensitivity")
        if self.stop_tolerance is not None:
            if self.mode != "sensitivity":
                raise UserError("a stop tolerance needs --mode sensitivity (effects of actions)")
            if not self.stop_tolerance > 0:
                raise UserError(f"the stop tolerance must be > 0, got {self.stop_tolerance}")
        if self.action_set is not None:
            missing = sorted(set(self.substations) - set(self.action_set.substations()))
            if missing:
                raise UserError(
                    f"the action set has no action on substation(s) {missing}: collect only "
                    "substations with actions in the file"
                )

    def identity(self) -> dict:
        """The settings that make two collections interchangeable (JSON-friendly)."""
        import grid2op

        out = {
            "format": SHARD_FORMAT,
            "env": self.spec.to_dict(),
            "mode": self.mode,
            "attributes": list(self.attributes),
            "seed": int(self.seed),
            "max_steps": self.max_steps,
            "episodes_per_shard": int(self.episodes_per_shard),
            "grid2op_version": grid2op.__version__,
        }
        if self.action_set is not None:  # absent otherwise: unchanged fingerprints
            out["action_set"] = self.action_set.identity()
        if self.actions_per_state != 1:  # likewise
            out["actions_per_state"] = int(self.actions_per_state)
        if self.stop_tolerance is not None:  # which shards exist depends on it
            out["stop_tolerance"] = float(self.stop_tolerance)
        if self.units:  # likewise: unchanged fingerprints of topology-only collections
            out["units"] = list(self.units)
        return out

    def topologies(self, env, sub: int) -> list:
        """The topologies the explorative policy draws from on ``sub`` (``action_raw`` indexes
        them): the action set's actions of ``sub``, else every unitary topology."""
        if self.action_set is not None:
            return self.action_set.topologies(env, sub)
        from distributed_grid2op.grid import unitary_topologies

        return unitary_topologies(env, sub)

    def fingerprint(self) -> str:
        """Short hash of `identity` stored in every shard."""
        text = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclass
class Transitions:
    """The dataset of one substation (or unit column): N transitions in episode order.

    ``action`` is the thesis encoding: index of the distinct topology vector among those in
    the data (``np.unique`` order) divided by their number; ``action_raw`` is the index in
    `distributed_grid2op.grid.unitary_topologies` (with an action set: among the set's
    actions of the substation, `CollectSettings.topologies`). For a unit column (``unit``
    set, ``substation`` -1), ``action`` encodes the applied values (``applied``) the same way
    (`encode_actions`: their rank / the number of distinct values), ``action_raw`` is 0.
    """

    substation: int
    state: np.ndarray  # (N, n) float32
    next_state: np.ndarray  # (N, n) float32
    action_raw: np.ndarray  # (N,) int32
    action: np.ndarray  # (N,) float64 in [0, 1)
    terminal: np.ndarray  # (N,) bool
    episode_id: np.ndarray  # (N,) int32
    n_episodes: int = 0
    state_names: list[str] = field(default_factory=list)
    #: sensitivity mode: the do-nothing simulation of the same state, (N, n) float32
    reference: np.ndarray | None = None
    #: a unit column: its name (`unit_key`), the values asked for and applied, (N,) float32
    unit: str | None = None
    requested: np.ndarray | None = None
    applied: np.ndarray | None = None

    @property
    def column(self):
        """The collection column: the substation id, or the unit's name."""
        return self.unit if self.unit is not None else self.substation

    def __len__(self) -> int:
        return len(self.action_raw)

    def drop_terminal(self) -> Transitions:
        """The same data without the terminal transitions (and the encoding recomputed)."""
        keep = ~self.terminal
        return _make_transitions(
            self.substation,
            self.state[keep],
            self.next_state[keep],
            self.action_raw[keep],
            self.terminal[keep],
            self.episode_id[keep],
            self.n_episodes,
            self.state_names,
            self._vectors,
            None if self.reference is None else self.reference[keep],
            **(
                {}
                if self.unit is None
                else {
                    "unit": self.unit,
                    "requested": self.requested[keep],
                    "applied": self.applied[keep],
                }  # fmt: skip
            ),
        )

    def effects(self) -> np.ndarray:
        """``next_state - reference`` (sensitivity mode): the action's own effect per row."""
        if self.reference is None:
            raise UserError("sensitivity vectors need data collected with --mode sensitivity")
        return self.next_state.astype(np.float64) - self.reference

    _vectors: np.ndarray | None = None


def encode_actions(action_raw: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
    """Thesis encoding: rank of the distinct set-bus vector among those present / their number.

    ``vectors[i]`` is the set-bus vector of unitary topology ``i`` (identity if None). Float
    ``action_raw`` (a unit column's applied values): the rank of each distinct value / their
    number, which puts the column on the [0, 1) scale of the topology columns (the max-norm
    Mixed-KSG is not scale invariant: MW next to line loadings would hide any dependence) and
    keeps ties (e.g. no curtailment) as ties.
    """
    raw = np.asarray(action_raw)
    raw = raw if np.issubdtype(raw.dtype, np.floating) else raw.astype(np.int64)
    if raw.size == 0:
        return np.zeros(0)
    rows = raw[:, None] if vectors is None else np.asarray(vectors)[raw]
    uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
    return np.asarray(inverse, dtype=np.float64).ravel() / len(uniq)


def _make_transitions(
    sub, state, next_state, raw, terminal, episode_id, n_ep, names, vectors, reference=None,
    unit=None, requested=None, applied=None,
):  # fmt: skip
    t = Transitions(
        substation=int(sub),
        state=state,
        next_state=next_state,
        action_raw=raw,
        action=encode_actions(raw if unit is None else applied.astype(np.float64), vectors),
        terminal=terminal,
        episode_id=episode_id,
        n_episodes=int(n_ep),
        state_names=list(names),
        reference=reference,
        unit=unit,
        requested=requested,
        applied=applied,
    )
    t._vectors = vectors
    return t


def episode_seeds(seed: int, sub, episode: int) -> tuple[int, int]:
    """(env seed, agent seed) of one episode, from (seed, substation, episode) only (a unit
    column ``sub``: from (seed, `UNIT_SEED_TAG` + kind index, unit id, episode))."""
    if is_unit(sub):
        kind, uid = parse_unit_key(sub)
        words = [int(seed), UNIT_SEED_TAG + UNIT_KINDS.index(kind), uid, int(episode)]
    else:
        words = [int(seed), int(sub), int(episode)]
    env_seed, agent_seed = np.random.SeedSequence(words).generate_state(2)
    return int(env_seed) >> 1, int(agent_seed) >> 1


def shard_name(settings: CollectSettings, sub, first: int) -> str:
    """Deterministic shard file name for episodes ``first .. first + episodes_per_shard - 1``
    (a unit column ``sub``: ``<mode>-<kind><id>-ep...``)."""
    last = first + settings.episodes_per_shard - 1
    if is_unit(sub):
        kind, uid = parse_unit_key(sub)
        return f"{settings.mode}-{kind}{uid:03d}-ep{first:06d}-{last:06d}.npz"
    return f"{settings.mode}-sub{sub:03d}-ep{first:06d}-{last:06d}.npz"


def state_names(env, attributes: Sequence[str]) -> list[str]:
    """Names of the recorded state variables, e.g. ``rho[3]`` (one per vector entry)."""
    template = env.observation_space._template_obj
    names = []
    for attr in attributes:
        if not hasattr(template, attr):
            raise UserError(f"observations have no attribute {attr!r}")
        size = np.size(getattr(template, attr))
        names += [f"{attr}[{i}]" for i in range(size)]
    return names


# --------------------------------------------------------------------------- worker side


def _worker_env(spec: EnvSpec, ctx: WorkerContext | None = None):
    """The collection env of ``spec`` in a worker (``ctx``; default: the driver's own), made
    once with its chronics cached in memory and kept in ``ctx.cache``."""
    ctx = LOCAL if ctx is None else ctx
    key = ("collect-env", spec.key())
    env = ctx.cache.get(key)
    if env is None:
        with quiet_grid2op():
            env = _make_cached(spec)
        ctx.cache[key] = env
    return env


def _make_cached(spec: EnvSpec):
    """The env with its chronics held in memory (`MultifolderWithCache`): a reset then costs
    ~2 ms instead of ~12 ms of CSV reading on case14, and episodes here are a few steps long.
    Same data, same chronic ids; falls back to the plain env when the chronics are not files."""
    from dataclasses import replace

    if "chronics_class" not in spec.kwargs:
        from grid2op.Chronics import MultifolderWithCache

        try:
            env = replace(
                spec, kwargs={**spec.kwargs, "chronics_class": MultifolderWithCache}
            ).make()
            env.chronics_handler.real_data.set_filter(lambda _: True)
            env.chronics_handler.real_data.reset()
            return env
        except Exception:  # noqa: BLE001 - not a folder of chronics: the plain env below
            pass
    return spec.make()


def _extract(obs, attributes) -> np.ndarray:
    parts = [np.ravel(np.asarray(getattr(obs, a), dtype=np.float32)) for a in attributes]
    vec = parts[0] if len(parts) == 1 else np.concatenate(parts)
    return np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0)


class _TopologyPolicy:
    """Explorative policy of a substation column: a uniformly random topology of its list."""

    def __init__(self, topologies: list):
        self.topologies = topologies

    def draw(self, rng, obs):
        """(grid2op action, ``action_raw``, requested value or None)."""
        a = int(rng.integers(len(self.topologies)))
        return self.topologies[a], a, None

    def applied(self, obs):
        return None


#: what a unit column records as applied: the next observation's attribute
APPLIED_ATTRIBUTE = {
    "redispatch": "actual_dispatch",
    "curtailment": "curtailment_mw",
    "storage": "storage_power",
}


class _UnitPolicy:
    """Explorative policy of a unit column (module docstring): one uniformly random legal value
    of the unit per step."""

    def __init__(self, env, key: str):
        from distributed_grid2op.continuous import EnvRules

        self.kind, self.unit = parse_unit_key(key)
        self.action_space = env.action_space
        self.rules = EnvRules.from_env(env)

    def draw(self, rng, obs):
        from distributed_grid2op.continuous import (
            UnitValues,
            legal_action,
            redispatch_bounds,
            storage_bounds,
        )

        u, ids = self.unit, np.array([self.unit])
        if self.kind == "redispatch":
            lo, hi = redispatch_bounds(obs)
            delta = float(rng.uniform(lo[u], hi[u]))
            values = UnitValues(redispatch=(ids, np.array([delta])))
            requested = float(obs.target_dispatch[u]) + delta
        elif self.kind == "curtailment":
            requested = float(rng.uniform(0.0, 1.0))
            values = UnitValues(curtailment=(ids, np.array([requested])))
        else:
            lo, hi = storage_bounds(obs, self.rules.storage_losses)
            requested = float(rng.uniform(lo[u], hi[u]))
            values = UnitValues(storage=(ids, np.array([requested])))
        action, _ = legal_action(self.action_space, obs, values, self.rules)
        return action, 0, requested

    def applied(self, obs) -> float:
        """The unit's value in ``obs`` (a game-over observation without it: 0, like its rho)."""
        values = getattr(obs, APPLIED_ATTRIBUTE[self.kind], None)
        if values is None or np.size(values) <= self.unit:
            return 0.0
        value = float(np.asarray(values, dtype=float)[self.unit])
        return value if np.isfinite(value) else 0.0


def _policy(settings: CollectSettings, env, column):
    """The explorative policy of a collection column."""
    if is_unit(column):
        return _UnitPolicy(env, column)
    return _TopologyPolicy(settings.topologies(env, column))


def _episode_thesis(env, policy, rng, attributes, max_steps):
    """Play ``policy`` with ``env.step``: (states, next states, actions, terminal flags,
    requested, applied) of at most ``max_steps`` transitions."""
    obs = env.get_obs()
    s = _extract(obs, attributes)
    states, nexts, acts, terms, reqs, apps = [], [], [], [], [], []
    steps = 0
    while True:
        action, a, req = policy.draw(rng, obs)
        obs, _, done, info = env.step(action)
        s2 = _extract(obs, attributes)
        states.append(s)
        nexts.append(s2)
        acts.append(a)
        reqs.append(req)
        apps.append(policy.applied(obs))
        terms.append(bool(done and info.get("exception")))
        s = s2
        steps += 1
        if done or (max_steps is not None and steps >= max_steps):
            return states, nexts, acts, terms, reqs, apps


def _episode_simulate(env, policy, rng, attributes, max_steps, per_state=1, reference=False):
    """A do-nothing (reconnecting) trajectory; at each state ``per_state`` actions of
    ``policy`` are evaluated with ``obs.simulate`` (and, with ``reference``, do-nothing once):
    returns (states, next states, actions, terminal flags, references or None, requested,
    applied), at most ``max_steps`` transitions."""
    from distributed_grid2op.grid import reconnect_action

    obs = env.get_obs()
    do_nothing = env.action_space({})
    states, nexts, acts, terms, reqs, apps = [], [], [], [], [], []
    refs = [] if reference else None
    while True:
        s = _extract(obs, attributes)
        ref = None
        if reference:
            ref_obs, _, ref_done, _ = obs.simulate(do_nothing)
            ref = None if ref_done else _extract(ref_obs, attributes)
        for _ in range(per_state):
            action, a, req = policy.draw(rng, obs)
            sim_obs, _, sim_done, _ = obs.simulate(action)
            states.append(s)
            nexts.append(_extract(sim_obs, attributes))
            acts.append(a)
            reqs.append(req)
            apps.append(policy.applied(sim_obs))
            if reference:
                # a diverging reference leaves no effect to measure: flagged like a divergence
                refs.append(nexts[-1] if ref is None else ref)
                sim_done = sim_done or ref is None
            terms.append(bool(sim_done))
            if max_steps is not None and len(acts) >= max_steps:
                return states, nexts, acts, terms, refs, reqs, apps
        act = reconnect_action(env.action_space, obs) or do_nothing
        obs, _, done, _ = env.step(act)
        if done:
            return states, nexts, acts, terms, refs, reqs, apps


def _start_obs_ready(env) -> bool:
    """Whether the env holds a state to start from (a fast-forward may end in a game over:
    ``env.done``, or an env grid2op no longer considers initialised)."""
    if env.done:
        return False
    try:
        env.get_obs()
    except Exception as exc:  # noqa: BLE001 - grid2op's EnvError "not initialized"
        if "not initialized" in str(exc) or "not intialized" in str(exc):
            return False
        raise
    return True


def run_shard(
    settings: CollectSettings, sub: int, first: int, n_scenarios: int, ctx: WorkerContext = None
) -> dict:
    """Play episodes ``first ..`` of one shard of substation ``sub``; arrays only.

    A shard never holds more than ``n_samples`` transitions (the dataset is truncated there
    anyway): it stops at that budget, mid-episode if needed (a prefix of the same episode),
    and is then marked ``truncated``.
    """
    env = _worker_env(settings.spec, ctx)
    policy = _policy(settings, env, sub)
    sensitivity = settings.mode == "sensitivity"
    unit = is_unit(sub)
    extra = ((REFERENCE,) if sensitivity else ()) + (UNIT_ARRAYS if unit else ())
    cols = {k: [] for k in _ARRAYS + extra}
    lengths = []
    budget = settings.n_samples
    with quiet_grid2op():
        for ep in range(first, first + settings.episodes_per_shard):
            remaining = budget - len(cols["action_raw"])
            if remaining <= 0:
                break
            env_seed, agent_seed = episode_seeds(settings.seed, sub, ep)
            env.reset(seed=env_seed, options={"time serie id": ep % n_scenarios})
            rng = np.random.default_rng(agent_seed)
            if settings.mode != "thesis":
                room = env.chronics_handler.max_timestep() - settings.max_steps - 1
                if room > 0:
                    env.fast_forward_chronics(int(np.random.default_rng(env_seed).integers(room)))
                if not _start_obs_ready(env):  # the do-nothing step to the start is a game over
                    lengths.append(0)  # no state to start from: an empty episode
                    continue
            cap = remaining if settings.max_steps is None else min(settings.max_steps, remaining)
            if settings.mode == "thesis":
                states, nexts, acts, terms, reqs, apps = _episode_thesis(
                    env, policy, rng, settings.attributes, cap
                )
            else:
                states, nexts, acts, terms, refs, reqs, apps = _episode_simulate(
                    env, policy, rng, settings.attributes, cap,
                    settings.actions_per_state, sensitivity,
                )  # fmt: skip
                if sensitivity:
                    cols[REFERENCE] += refs
            if unit:
                cols["requested"] += reqs
                cols["applied"] += apps
            n = len(acts)
            lengths.append(n)
            cols["state"] += states
            cols["next_state"] += nexts
            cols["action_raw"] += acts
            cols["terminal"] += terms
            cols["episode_id"] += [ep] * n
            cols["step"] += list(range(n))
    width = len(state_names(env, settings.attributes))
    out = {
        "state": np.asarray(cols["state"], dtype=np.float32).reshape(-1, width),
        "next_state": np.asarray(cols["next_state"], dtype=np.float32).reshape(-1, width),
        "action_raw": np.asarray(cols["action_raw"], dtype=np.int32),
        "terminal": np.asarray(cols["terminal"], dtype=bool),
        "episode_id": np.asarray(cols["episode_id"], dtype=np.int32),
        "step": np.asarray(cols["step"], dtype=np.int32),
        "episode_lengths": np.asarray(lengths, dtype=np.int32),
        "budget": np.int64(budget),
        "truncated": np.bool_(len(cols["action_raw"]) >= budget),
    }
    if sensitivity:
        out[REFERENCE] = np.asarray(cols[REFERENCE], dtype=np.float32).reshape(-1, width)
    for key in UNIT_ARRAYS if unit else ():
        out[key] = np.asarray(cols[key], dtype=np.float32)
    return out


def _run_task(ctx: WorkerContext, task: tuple[int, int], shared: tuple) -> dict:
    """Task function (runs in a worker): the arrays of shard ``task = (sub, first)``."""
    settings, n_scenarios = shared
    sub, first = task
    t0 = time.perf_counter()
    arrays = run_shard(settings, sub, first, n_scenarios, ctx)
    arrays["seconds"] = time.perf_counter() - t0
    return arrays


def write_shard(path: str | Path, settings: CollectSettings, sub: int, first: int, arrays: dict):
    """Write one shard atomically (driver side); ``arrays`` as `run_shard` returns them."""
    arrays = {k: v for k, v in arrays.items() if k != "seconds"}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                fingerprint=np.array(settings.fingerprint()),
                substation=np.array(sub) if is_unit(sub) else np.int32(sub),
                first_episode=np.int32(first),
                **arrays,
            )
    return Path(path)


# --------------------------------------------------------------------------- driver side


def read_shard(path: str | Path, fingerprint: str | None = None) -> dict:
    """Load a shard; `UserError` (one line) if it is corrupt or from other settings."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a corrupt file
        raise UserError(
            f"corrupt shard {path} ({type(exc).__name__}); delete it and rerun to collect it again"
        ) from exc
    missing = [k for k in (*_ARRAYS, "fingerprint", "episode_lengths") if k not in data]
    if missing:
        raise UserError(f"corrupt shard {path} (missing {', '.join(missing)}); delete it and rerun")
    if fingerprint is not None and str(data["fingerprint"]) != fingerprint:
        raise UserError(
            f"shard {path} comes from other collection settings; use another output folder"
        )
    n = len(data["action_raw"])
    extra = tuple(k for k in (REFERENCE, *UNIT_ARRAYS) if k in data)
    if any(len(data[k]) != n for k in _ARRAYS + extra):
        raise UserError(f"corrupt shard {path} (arrays of different lengths); delete it and rerun")
    return data


@dataclass
class _SubProgress:
    """Driver-side state of one substation: the contiguous prefix of shards on disk."""

    samples_done: int = 0  # in the shards written (a contiguous prefix, in episode order)
    next_write: int = 0  # first episode of the next shard to write
    next_first: int = 0  # next shard to hand to a worker
    in_flight: int = 0
    pending: dict = field(default_factory=dict)  # first -> arrays computed ahead of the prefix
    shard_samples: list = field(default_factory=list)  # samples of each shard written or read
    effects: list = field(default_factory=list)  # effect rows of the prefix (stop tolerance)
    column: np.ndarray | None = None  # its effect column after the last shard
    changes: list = field(default_factory=list)  # column change at each shard after the first
    stable: bool = False  # the stop tolerance was met: no more shards


#: Shards with data of a substation before its effect column may be called stable (the first
#: change is measured at the second one).
STOP_MIN_SHARDS = 2


def effect_column(effects: np.ndarray) -> np.ndarray:
    """The effect column the stop rule watches: median absolute effect of each variable (the
    statistic the profiles method factorizes)."""
    return np.median(np.abs(effects), axis=0) if len(effects) else np.zeros(effects.shape[1])


def column_change(before: np.ndarray, after: np.ndarray) -> float:
    """Relative change of an effect column: sum |after - before| / sum |after| (inf when the
    column is 0)."""
    total = float(np.abs(after).sum())
    return float(np.abs(after - before).sum()) / total if total > 0 else np.inf


def _observe(st: _SubProgress, data: dict, settings: CollectSettings):
    """Account for one more shard of the written prefix in the stop rule (driver side: the
    prefix is in episode order, so the decision does not depend on the workers)."""
    if settings.stop_tolerance is None:
        return
    keep = ~np.asarray(data["terminal"], bool)
    if not keep.any():  # an empty shard (a segment starting in a game over) says nothing
        return
    eff = data["next_state"][keep].astype(np.float64) - data[REFERENCE][keep]
    st.effects.append(eff.astype(np.float32))
    column = effect_column(np.concatenate(st.effects))
    if st.column is not None:
        st.changes.append(column_change(st.column, column))
        if len(st.effects) >= STOP_MIN_SHARDS and st.changes[-1] < settings.stop_tolerance:
            st.stable = True
    st.column = column


def _check_settings_file(folder: Path, settings: CollectSettings, resume: bool):
    path = folder / SETTINGS_FILE
    identity = settings.identity()
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"corrupt collection settings file {path}; delete the folder") from exc
        if old.get("fingerprint") != settings.fingerprint():
            raise UserError(
                f"{folder} holds a collection made with other settings; choose another output folder"
            )
        if not resume:
            raise UserError(f"{folder} already holds a collection; pass --resume to continue it")
    write_json(path, {"fingerprint": settings.fingerprint(), **identity})


def collect(
    settings: CollectSettings,
    out_dir: str | Path,
    *,
    workers: int = 1,
    executor: Executor | None = None,
    resume: bool = True,
    progress: bool = True,
    n_scenarios: int | None = None,
) -> dict[int, Transitions]:
    """Collect up to ``n_samples`` transitions per substation into ``out_dir`` (shards).

    Returns the per-substation datasets. With ``resume``, existing shards of the same
    settings are reused (validated; a corrupt one raises `UserError`).
    Shards run on ``executor`` (a `distributed_grid2op.execution.Executor`), or on one made
    with ``workers`` workers for this call. The shard files written, and their contents, do
    not depend on the executor or the number of workers.
    """
    from distributed_grid2op.envs import n_scenarios as count_scenarios

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _check_settings_file(folder, settings, resume)
    for stale in folder.glob(".*.npz"):  # a shard's temp file left by a killed run
        stale.unlink(missing_ok=True)
    fp = settings.fingerprint()
    if n_scenarios is None:
        n_scenarios = count_scenarios(_worker_env(settings.spec))
    per = settings.episodes_per_shard
    subs = list(settings.columns)
    state = {s: _SubProgress() for s in subs}

    # resume: account for the shards already on disk, in order
    for s in subs:
        st = state[s]
        while (
            st.next_write < settings.n_episodes
            and st.samples_done < settings.n_samples
            and not st.stable
        ):
            path = folder / shard_name(settings, s, st.next_write)
            if not path.is_file():
                break
            data = read_shard(path, fp)
            if bool(data.get("truncated", False)) and int(data["budget"]) < settings.n_samples:
                raise UserError(
                    f"shard {path} was collected for --samples {int(data['budget'])}; "
                    "use a new output folder for more samples"
                )
            st.samples_done += len(data["action_raw"])
            st.shard_samples.append(len(data["action_raw"]))
            _observe(st, data, settings)
            st.next_write += per
        st.next_first = st.next_write

    def needed(s, first):
        # shard `first` belongs to the dataset iff the shards before it fall short of the
        # budget (or its column is stable): decided on the written prefix only, so the same
        # for any number of workers
        st = state[s]
        return (
            first < settings.n_episodes and st.samples_done < settings.n_samples and not st.stable
        )

    def expected(s):
        # samples a substation will have once its shards in flight are back (planning only)
        st = state[s]
        mean = np.mean(st.shard_samples) if st.shard_samples else 0.0
        return st.samples_done + mean * (st.in_flight + len(st.pending))

    def tasks():
        # lazily consumed: each task is planned from the results received so far
        while True:
            cands = [s for s in subs if needed(s, state[s].next_first)]
            if not cands:
                return
            s = min(cands, key=lambda x: (expected(x), state[x].in_flight, _order(x)))
            first = state[s].next_first
            state[s].next_first += per
            state[s].in_flight += 1
            yield s, first

    total = settings.n_samples * len(subs)
    done0 = sum(min(state[s].samples_done, settings.n_samples) for s in subs)
    pbar = _progress_bar(total, done0, progress)

    def on_result(s, first, arrays):
        st = state[s]
        st.in_flight -= 1
        st.pending[first] = arrays
        before = min(st.samples_done, settings.n_samples)
        while st.next_write in st.pending:
            shard = st.pending.pop(st.next_write)
            if needed(s, st.next_write):  # else: computed ahead but beyond the budget, dropped
                write_shard(folder / shard_name(settings, s, st.next_write), settings, s,
                            st.next_write, shard)  # fmt: skip
                st.samples_done += len(shard["action_raw"])
                st.shard_samples.append(len(shard["action_raw"]))
                _observe(st, shard, settings)
            st.next_write += per
        pbar.update(min(st.samples_done, settings.n_samples) - before)

    own = executor is None
    if own:
        executor = Executor(workers)
    try:
        for (s, first), arrays in executor.imap(_run_task, tasks(), (settings, n_scenarios)):
            on_result(s, first, arrays)
    finally:
        pbar.close()
        if own:
            executor.close()
    return load_collection(folder, settings)


def _order(column) -> tuple:
    """Tie-break order of the collection columns: substations by id, then units by name."""
    return (1, 0, column) if is_unit(column) else (0, int(column), "")


def _progress_bar(total, initial, enabled):
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc="collect",
        unit="sample",
        disable=not enabled,
        dynamic_ncols=True,
        mininterval=0.5,
    )


def load_collection(folder: str | Path, settings: CollectSettings) -> dict[int, Transitions]:
    """Assemble each substation's dataset from the shards (episode order, truncated)."""
    folder = Path(folder)
    fp = settings.fingerprint()
    env = _worker_env(settings.spec)
    names = state_names(env, settings.attributes)
    out = {}
    for s in settings.columns:
        from distributed_grid2op.grid import substation_topology

        unit = is_unit(s)
        vectors = (
            None
            if unit
            else np.array([substation_topology(a, s, env) for a in settings.topologies(env, s)])
        )
        keys = (
            _ARRAYS
            + ((REFERENCE,) if settings.mode == "sensitivity" else ())
            + (UNIT_ARRAYS if unit else ())
        )
        parts, count, n_ep = [], 0, 0
        first = 0
        while first < settings.n_episodes and count < settings.n_samples:
            path = folder / shard_name(settings, s, first)
            if not path.is_file():
                break
            data = read_shard(path, fp)
            absent = [k for k in keys if k not in data]
            if absent:
                raise UserError(
                    f"corrupt shard {path} (missing {', '.join(absent)}); delete it and rerun"
                )
            lengths = data["episode_lengths"]
            if (
                bool(data.get("truncated", False))
                and count + len(data["action_raw"]) < settings.n_samples
            ):
                raise UserError(
                    f"shard {path} was collected for --samples {int(data['budget'])}; "
                    "use a new output folder for more samples"
                )
            keep_eps = min(len(lengths), settings.n_episodes - first)
            n_keep = int(np.sum(lengths[:keep_eps]))
            parts.append({k: data[k][:n_keep] for k in keys})
            count += n_keep
            n_ep += keep_eps
            first += settings.episodes_per_shard
        if parts:
            cat = {k: np.concatenate([p[k] for p in parts]) for k in keys}
        else:
            width = len(names)
            cat = {k: np.zeros((0, width) if k in ("state", "next_state", REFERENCE) else 0)
                   for k in keys}  # fmt: skip
        n = min(count, settings.n_samples)
        if n:
            n_ep = int(cat["episode_id"][n - 1]) + 1
        units = {}
        if unit:
            units = {"unit": s, **{k: cat[k][:n].astype(np.float32) for k in UNIT_ARRAYS}}
        out[s] = _make_transitions(
            -1 if unit else s,
            cat["state"][:n].astype(np.float32),
            cat["next_state"][:n].astype(np.float32),
            cat["action_raw"][:n].astype(np.int32),
            cat["terminal"][:n].astype(bool),
            cat["episode_id"][:n].astype(np.int32),
            n_ep,
            names,
            vectors,
            cat[REFERENCE][:n].astype(np.float32) if REFERENCE in cat else None,
            **units,
        )
    return out


def save_dataset(path: str | Path, data: Transitions, metadata: dict) -> Path:
    """Write one substation's dataset in the ARCHITECTURE transition format (+ JSON sidecar)."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(
                f,
                state=data.state,
                next_state=data.next_state,
                action=data.action[:, None],
                action_raw=data.action_raw,
                terminal=data.terminal,
                state_names=np.array(data.state_names),
                action_names=np.array([data.unit or f"sub{data.substation}"]),
                episode_id=data.episode_id,
                seed=np.int64(metadata.get("seed", -1)),
            )
    write_json(path.with_suffix(".json"), metadata)
    return path


def settings_dict(settings: CollectSettings) -> dict:
    """JSON-friendly settings (for summaries)."""
    d = asdict(settings)
    d["spec"] = settings.spec.to_dict()
    if settings.action_set is None:
        d.pop("action_set")  # as before action sets existed
    else:
        d["action_set"] = {"source": settings.action_set.source, **settings.action_set.identity()}
    return d


def cpu_count() -> int:
    """Usable cores (affinity-aware)."""
    return available_cpus()
