"""Operating cost of one step, term by term, and a reward made of them.

For a step from observation ``obs`` to ``next_obs`` (``h`` = step length in hours,
``obs.delta_time / 60``), energies use the trapezoid rule over the step's two ends,
``E = h * (P(obs) + P(next_obs)) / 2``:

- ``redispatch``: ``sum_g |actual_dispatch_g| * gen_cost_per_MW_g``, integrated: in the
  env's currency units when it prices its generators (any ``gen_cost_per_MW > 0``; unpriced
  generators then cost 0), else in MWh (every generator at 1 per MWh; `redispatch_priced`
  says which);
- ``curtailment``: curtailed renewable energy, ``sum curtailment_mw``, integrated (MWh);
- ``losses``: ``sum gen_p - sum load_p - sum storage_power`` (storage power > 0 charges),
  integrated (MWh; shunts are not counted);
- ``storage``: energy through the storage units, ``sum |storage_power|``, integrated (MWh);
- ``overload``: ``sum_l max(rho_l - 1, 0)`` of ``next_obs``, the state the step reached
  (dimensionless, per step).

`cost_reward` is ``-sum_k weight_k * term_k`` with `DEFAULT_WEIGHTS`: 1 per currency unit
(or MWh) of redispatch, 1 per MWh curtailed or lost, 0 for storage throughput (its losses
are already in ``losses``) and 100 per unit of line loading above the limit (a line at 110%
for one step weighs 10, as much as 0.25 MWh of redispatch at 40 per MWh, the price of the
cheapest case14 generator). Scale the weights to the grid at hand.

`transition_reward` is the continuous agents' reward of one step: `cost_reward`, or
``-game_over_cost`` (`GAME_OVER_COST` by default, in the units of the weighted costs) for the
step that ends in a game over: without it, ending the episode early would be the cheapest
policy (no cost after the end).
"""

from __future__ import annotations

import numpy as np

from distributed_grid2op.errors import UserError

TERMS = ("redispatch", "curtailment", "losses", "storage", "overload")
#: reward of a game-over step is minus this (about 44 steps of uniformly random redispatch
#: on educ_case14_storage, measured at 228 per step)
GAME_OVER_COST = 10_000.0
#: weights of `cost_reward` (see the module docstring for their units)
DEFAULT_WEIGHTS = {"redispatch": 1.0, "curtailment": 1.0, "losses": 1.0, "storage": 0.0,
                   "overload": 100.0}  # fmt: skip


def redispatch_priced(obs) -> bool:
    """Whether the grid prices its generators (redispatch cost in currency, else MWh)."""
    return bool(np.any(np.asarray(type(obs).gen_cost_per_MW, dtype=float) > 0))


def redispatch_prices(grid) -> np.ndarray:
    """Price of one MWh of redispatch per generator, shape (n_gen,): ``gen_cost_per_MW`` of
    ``grid`` (an env's or observation's class), or 1 for every generator when none is priced."""
    price = np.asarray(grid.gen_cost_per_MW, dtype=float)
    return price if np.any(price > 0) else np.ones_like(price)


def _powers(obs) -> dict[str, float]:
    """The instantaneous powers (MW, or currency per hour) of the integrated terms."""
    price = redispatch_prices(type(obs))
    storage = np.asarray(getattr(obs, "storage_power", np.zeros(0)), dtype=float)
    return {
        "redispatch": float(np.sum(np.abs(np.asarray(obs.actual_dispatch, float)) * price)),
        "curtailment": float(np.sum(np.asarray(obs.curtailment_mw, dtype=float))),
        "losses": float(np.sum(obs.gen_p) - np.sum(obs.load_p) - np.sum(storage)),
        "storage": float(np.sum(np.abs(storage))),
    }


def _energy(before: float, after: float, next_obs) -> float:
    """``h * (before + after) / 2``: the energy of a step from the powers at its two ends."""
    return float(next_obs.delta_time) / 60.0 * (before + after) / 2.0


def redispatched_mwh(obs, next_obs) -> float:
    """Energy redispatched during the step, ``sum_g |actual_dispatch_g|`` integrated (MWh,
    unpriced: the ``redispatch`` term in MWh even when the grid prices its generators)."""
    dispatch = [
        float(np.sum(np.abs(np.asarray(o.actual_dispatch, float)))) for o in (obs, next_obs)
    ]
    return _energy(*dispatch, next_obs)


def step_costs(obs, next_obs) -> dict[str, float]:
    """The cost terms of the step from ``obs`` to ``next_obs`` (module docstring), keyed by
    `TERMS`."""
    before, after = _powers(obs), _powers(next_obs)
    terms = {k: _energy(before[k], after[k], next_obs) for k in before}
    rho = np.asarray(next_obs.rho, dtype=float)
    terms["overload"] = float(np.sum(np.maximum(rho - 1.0, 0.0)))
    return terms


def cost_weights(weights: dict[str, float] | None = None) -> dict[str, float]:
    """`DEFAULT_WEIGHTS` with ``weights`` overriding some (an unknown term is a `UserError`)."""
    w = dict(DEFAULT_WEIGHTS)
    if weights:
        unknown = sorted(set(weights) - set(TERMS))
        if unknown:
            raise UserError(f"unknown cost term(s) {unknown}; the terms are {list(TERMS)}")
        w.update({k: float(v) for k, v in weights.items()})
    return w


def total_cost(terms: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """``sum_k weights[k] * terms[k]`` of `step_costs` terms (``weights``: see `cost_weights`)."""
    w = cost_weights(weights)
    return float(sum(w[k] * terms[k] for k in TERMS))


def cost_reward(obs, next_obs, weights: dict[str, float] | None = None) -> float:
    """``-sum_k weights[k] * step_costs(obs, next_obs)[k]``; ``weights`` overrides some of
    `DEFAULT_WEIGHTS` (an unknown term is a `UserError`)."""
    return -total_cost(step_costs(obs, next_obs), weights)


def transition_reward(obs, next_obs, game_over: bool, weights: dict[str, float] | None = None,
                      game_over_cost: float = GAME_OVER_COST, *,
                      terms: dict[str, float] | None = None) -> float:  # fmt: skip
    """The continuous agents' reward of the step from ``obs`` to ``next_obs``:
    ``cost_reward(obs, next_obs, weights)``, or ``-game_over_cost`` when the step ended in a
    game over (its observation holds no grid state). ``terms``: the step's `step_costs` when
    the caller already has them."""
    if game_over:
        return -float(game_over_cost)
    return -total_cost(step_costs(obs, next_obs) if terms is None else terms, weights)
