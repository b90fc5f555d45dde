"""Optimisation expert: a DC optimal power flow over redispatch, curtailment and storage.

At a decision (the `Controller`'s rules: reconnection first, then a turn when the max line
loading reaches ``danger``) the expert solves, with cvxpy, a linear program around the
state of the next step if nothing is done (one ``obs.simulate`` of do-nothing; the current
state when it fails):

- variables: redispatch ``r_g`` of the dispatchable generators within their legal range now
  (`continuous.redispatch_bounds`: ramps, pmin / pmax, target dispatch), curtailed power
  ``u_i`` of the renewable generators in ``[0, available power]``, storage power ``s_j``
  within `continuous.storage_bounds` (power and energy limits), slack ``sigma_l >= 0`` per
  line;
- flows: ``f = f0 + PTDF (A_gen (r - (u - u0)) - A_sto (s - s0))`` with ``f0`` the active
  flows (origin side) of the base state, ``u0`` / ``s0`` the curtailment / storage in it;
- line limits (soft, so it is always feasible): ``|f_l| <= P_l + sigma_l``, ``P_l`` the
  active power that keeps line ``l`` at ``rho_max`` at its base reactive flow,
  ``P_l = sqrt((rho_max * S_l)^2 - q_l^2)``, ``S_l = sqrt(p_l^2 + q_l^2) / rho_l`` (its limit
  in MVA at its base voltage);
- balance: ``sum r = sum (u - u0) + sum (s - s0)`` (losses unchanged);
- objective (per step, currency units when the grid prices its generators, else MWh):
  ``h * (sum_g price_g |target_g + r_g| + curtailment_price * sum u + storage_price *
  sum |s|) + overload_price * sum sigma`` (``h`` = step hours; the redispatch term is the
  cost of the whole redispatch, so a decision also unwinds redispatch no longer needed).

The PTDF comes from the DC susceptances of the branches (lightsim2grid's model of the
backend, `branch_susceptances`) and the observation's topology (`ptdf`), with the slack
spread over the buses of each connected component (the balance constraint makes the choice
irrelevant for the decisions). The DC flows of an observation's own injections are within
3 MW (7% of the largest flow) of its AC flows on ``educ_case14_storage`` and within 6.4 MW
(2%) on ``l2rpn_idf_2023`` (measured over 30 and 10 steps); ``rho_max`` (0.95) leaves room
for that. The solution becomes a grid2op action through `continuous.legal_action`, the
bounds the continuous action sets use. The expert decides only in danger (the rules do
nothing below ``danger``), so redispatch it set stays until the next danger.

Solver: HiGHS (``highspy``, installed with cvxpy), because the problem is a linear program
(the absolute values become linear constraints): its dual simplex solves the 118-bus problem
in ~2.5 ms where CLARABEL (cvxpy's default interior-point solver, also shipped) takes ~40 ms
for the same optimum, and OSQP (first-order) hundreds of ms, less exactly. CLARABEL is the
fallback when HiGHS does not report an optimum. The problem is compiled once per expert with
cvxpy parameters (DPP), so that a decision only re-solves it.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.sparse.csgraph import connected_components

from distributed_grid2op.continuous import (
    ContinuousActionSet,
    UnitValues,
    legal_action,
    redispatch_bounds,
    step_hours,
    storage_bounds,
)
from distributed_grid2op.cost import redispatch_prices
from distributed_grid2op.errors import UserError
from distributed_grid2op.loop import (
    DEFAULT_DANGER,
    DEFAULT_RECONNECT,
    Controller,
    Decision,
    LoopAgent,
    Turn,
)

#: set-point changes smaller than this (MW, or curtailment limit) are not sent to grid2op
_NEGLIGIBLE = 1e-3
#: cvxpy solvers tried in turn (module docstring)
SOLVERS = ("HIGHS", "CLARABEL")


def branch_susceptances(env) -> np.ndarray:
    """DC susceptance of each powerline, in MW per radian, shape (n_line,), in grid2op's line
    order, from the lightsim2grid model of the env's backend (its lines, then its
    transformers, whose tap ratios are included)."""
    model = getattr(env.backend, "_grid", None)
    if model is None or not hasattr(model, "get_trafos"):
        raise UserError(
            "the optimisation expert needs the lightsim2grid backend (backend='lightsim')"
        )
    branches = list(model.get_lines()) + list(model.get_trafos())
    order = np.asarray([b.pos1_topo_vect for b in branches])
    if not np.array_equal(order, type(env).line_or_pos_topo_vect):
        raise UserError("the backend's branches are not in grid2op's line order")
    return -np.real([b.ydc_12 for b in branches]) * float(model.get_sn_mva())


def element_buses(obs) -> dict[str, np.ndarray]:
    """Global bus of each element (``sub + (busbar - 1) * n_sub``, -1 when disconnected):
    keys ``gen``, ``load``, ``storage``, ``line_or``, ``line_ex``."""
    cls = type(obs)
    topo = np.asarray(obs.topo_vect)
    out = {}
    for key, pos, sub in (
        ("gen", cls.gen_pos_topo_vect, cls.gen_to_subid),
        ("load", cls.load_pos_topo_vect, cls.load_to_subid),
        ("storage", cls.storage_pos_topo_vect, cls.storage_to_subid),
        ("line_or", cls.line_or_pos_topo_vect, cls.line_or_to_subid),
        ("line_ex", cls.line_ex_pos_topo_vect, cls.line_ex_to_subid),
    ):
        bus = topo[pos]
        out[key] = np.where(bus > 0, sub + (bus - 1) * cls.n_sub, -1).astype(np.int64)
    return out


def ptdf(obs, susceptance: np.ndarray) -> np.ndarray:
    """Power transfer distribution factors of the observation's topology: flow change
    (MW, origin side) of each line per MW injected at each bus, shape (n_line, n_bus); the
    slack is spread over the buses of each connected component (Laplacian pseudo-inverse)."""
    cls = type(obs)
    n_bus = cls.n_sub * int(cls.n_busbar_per_sub)
    buses = element_buses(obs)
    bo, be = buses["line_or"], buses["line_ex"]
    on = np.asarray(obs.line_status, dtype=bool) & (bo >= 0) & (be >= 0)
    lines = np.flatnonzero(on)
    incidence = np.zeros((len(lines), n_bus))
    incidence[np.arange(len(lines)), bo[lines]] = 1.0
    incidence[np.arange(len(lines)), be[lines]] = -1.0
    b = susceptance[lines]
    laplacian = incidence.T @ (b[:, None] * incidence)
    used = np.flatnonzero(np.abs(incidence).sum(axis=0) > 0)
    sub = laplacian[np.ix_(used, used)]
    # pseudo-inverse of a graph Laplacian: (L + P)^-1 - P, P the projector on the constant
    # vectors of each connected component (an inverse, much faster than an SVD)
    _, label = connected_components(sub != 0, directed=False)
    proj = (label[:, None] == label[None, :]) / np.bincount(label)[label][None, :]
    inverse = np.zeros((n_bus, n_bus))
    inverse[np.ix_(used, used)] = np.linalg.inv(sub + proj) - proj
    out = np.zeros((cls.n_line, n_bus))
    out[lines] = (b[:, None] * incidence) @ inverse
    return out


def bus_injections(obs) -> np.ndarray:
    """Active injection (MW) at each bus: generators minus loads minus storage charging."""
    cls = type(obs)
    buses = element_buses(obs)
    out = np.zeros(cls.n_sub * int(cls.n_busbar_per_sub))
    for key, p, sign in (("gen", obs.gen_p, 1.0), ("load", obs.load_p, -1.0),
                         ("storage", obs.storage_power, -1.0)):  # fmt: skip
        bus = buses[key]
        np.add.at(out, bus[bus >= 0], sign * np.asarray(p, dtype=float)[bus >= 0])
    return out


def dc_flows(obs, susceptance: np.ndarray) -> np.ndarray:
    """Active flows (MW, origin side) of a DC power flow of the observation's injections
    (to compare with its AC flows ``obs.p_or``)."""
    return ptdf(obs, susceptance) @ bus_injections(obs)


def line_limits_mw(obs, rho_max: float) -> np.ndarray:
    """Active power (MW) each line can carry at ``rho_max`` with its current reactive flow and
    voltage (0 when the reactive flow alone exceeds it; a disconnected line: its rated MVA)."""
    p, q = np.asarray(obs.p_or, dtype=float), np.asarray(obs.q_or, dtype=float)
    rho = np.asarray(obs.rho, dtype=float)
    rated = (
        np.sqrt(3.0)
        * np.asarray(obs.v_or, dtype=float)
        * np.asarray(obs.thermal_limit, dtype=float)
        / 1000.0
    )
    s = np.where(rho > 1e-3, np.hypot(p, q) / np.maximum(rho, 1e-3), rated)
    return np.sqrt(np.maximum((rho_max * s) ** 2 - q**2, 0.0))


class OPFExpert(LoopAgent):
    """Reconnect first; in danger, the redispatch, curtailment and storage set-points of a DC
    optimal power flow (module docstring).

    Args:
        action_space: the env's action space.
        env: the env (its grid, parameters and lightsim2grid backend).
        danger: decide when ``max(obs.rho) >= danger`` (otherwise the rules: do nothing).
        rho_max: line loading the flows are kept under (soft limit).
        kinds: continuous kinds used (default: every kind the env supports).
        curtailment_price: per MWh curtailed (default: the highest generator price, so
            redispatch comes first; 1 on unpriced grids).
        storage_price: per MWh through storage units.
        overload_price: per MW of line flow above its limit (the soft constraints).
        forecast: base the decision on ``obs.simulate`` of do-nothing (the next step), not on
            the current state.
        reconnect: the reconnection rule (`loop.Controller`).

    Attributes:
        solve_ms_: list, wall time (ms) of each cvxpy solve.
        decide_ms_: list, wall time (ms) of each whole decision (simulation, PTDF, solve).
        status_: list, cvxpy status of each solve.
        n_decisions_: decisions taken.
    """

    name = "opf"

    def __init__(
        self,
        action_space,
        env,
        danger: float = DEFAULT_DANGER,
        *,
        rho_max: float = 0.95,
        kinds=None,
        curtailment_price: float | None = None,
        storage_price: float = 1.0,
        overload_price: float = 1e4,
        forecast: bool = True,
        reconnect: str = DEFAULT_RECONNECT,
    ):
        super().__init__(action_space, Controller(env, danger=danger, reconnect=reconnect))
        if not 0 < rho_max:
            raise UserError(f"rho_max must be > 0, got {rho_max}")
        units = ContinuousActionSet.from_env(env, kinds=kinds)  # the kinds, checked
        self.redispatch, self.curtailment = units.redispatch, units.curtailment
        self.storage, self.rules = units.storage, units.rules
        self.susceptance = branch_susceptances(env)
        self.prices = redispatch_prices(type(env))
        self.curtailment_price = (
            float(np.max(self.prices)) if curtailment_price is None else float(curtailment_price)
        )
        self.storage_price, self.overload_price = float(storage_price), float(overload_price)
        self.rho_max, self.forecast, self.danger = float(rho_max), bool(forecast), float(danger)
        self.solve_ms_: list[float] = []
        self.decide_ms_: list[float] = []
        self.status_: list[str] = []
        self.n_decisions_ = 0
        self._problem = None
        self._ptdf_key, self._ptdf = None, None

    # -- the optimisation problem, compiled once ------------------------------------------
    def _build(self, n_line: int):
        """The problem with cvxpy parameters for everything that changes between decisions
        (DPP: compiled at the first solve only)."""
        import cvxpy as cp

        nr, nc, ns = len(self.redispatch), len(self.curtailment), len(self.storage)
        p = {
            "f0": cp.Parameter(n_line), "limit": cp.Parameter(n_line, nonneg=True),
            "h_r": cp.Parameter((n_line, nr)), "h_u": cp.Parameter((n_line, nc)),
            "h_s": cp.Parameter((n_line, ns)), "balance": cp.Parameter(),
            "r_lo": cp.Parameter(nr), "r_hi": cp.Parameter(nr), "target": cp.Parameter(nr),
            "u_hi": cp.Parameter(nc, nonneg=True), "s_lo": cp.Parameter(ns),
            "s_hi": cp.Parameter(ns), "r_cost": cp.Parameter(nr, nonneg=True),
            "u_cost": cp.Parameter(nonneg=True), "s_cost": cp.Parameter(nonneg=True),
        }  # fmt: skip
        r, u, s = cp.Variable(nr), cp.Variable(nc), cp.Variable(ns)
        total = cp.Variable(nr)  # |target + r|: the whole redispatch of each generator
        slack = cp.Variable(n_line, nonneg=True)
        # f0 holds the base flows without the base curtailment and storage (see solve)
        flow = p["f0"] + p["h_r"] @ r - p["h_u"] @ u - p["h_s"] @ s
        cost = (
            p["r_cost"] @ total
            + p["u_cost"] * cp.sum(u)
            + p["s_cost"] * cp.sum(cp.abs(s))
            + self.overload_price * cp.sum(slack)
        )
        constraints = [
            cp.abs(flow) <= p["limit"] + slack,
            cp.sum(r) - cp.sum(u) - cp.sum(s) == p["balance"],
            total >= p["target"] + r, total >= -p["target"] - r,
            r >= p["r_lo"], r <= p["r_hi"], u >= 0, u <= p["u_hi"],
            s >= p["s_lo"], s <= p["s_hi"],
        ]  # fmt: skip
        problem = cp.Problem(cp.Minimize(cost), constraints)
        return problem, p, (r, u, s, slack)

    def _ptdf_of(self, obs) -> np.ndarray:
        key = (np.asarray(obs.topo_vect).tobytes(), np.asarray(obs.line_status).tobytes())
        if key != self._ptdf_key:
            self._ptdf_key, self._ptdf = key, ptdf(obs, self.susceptance)
        return self._ptdf

    def _base(self, observation):
        """The state the decision is made around (the simulated next step, else the current
        one: no forecast, or a simulated game over), and the simulations it took."""
        from grid2op.Exceptions import NoForecastAvailable

        if not self.forecast:
            return observation, 0
        try:
            base, _, done, info = observation.simulate(self.action_space(), time_step=1)
        except NoForecastAvailable:
            return observation, 0
        if done or info.get("exception"):
            return observation, 1
        return base, 1

    def solve(self, observation, base=None) -> tuple[UnitValues, str, float]:
        """The DC OPF set-points for ``observation`` around the state ``base`` (default: the
        observation itself): ``(values, cvxpy status, solve ms)``; a failed solve: no change."""
        if self._problem is None:
            self._problem = self._build(type(observation).n_line)
        problem, p, (r, u, s, _) = self._problem
        base = observation if base is None else base
        cls = type(observation)
        buses = element_buses(observation)
        ptdf_ = self._ptdf_of(observation)
        h = step_hours(observation)
        lo, hi = redispatch_bounds(observation)
        slo, shi = storage_bounds(observation, self.rules.storage_losses)
        g, c, st = self.redispatch, self.curtailment, self.storage
        avail = np.asarray(base.gen_p_before_curtail, dtype=float)[c]
        curtailed = np.maximum(avail - np.asarray(base.gen_p, dtype=float)[c], 0.0)

        def columns(bus):
            return np.where(bus >= 0, ptdf_[:, np.maximum(bus, 0)], 0.0)

        h_u = columns(buses["gen"][c]).reshape(cls.n_line, len(c))
        h_s = columns(buses["storage"][st]).reshape(cls.n_line, len(st))
        s0 = np.asarray(base.storage_power, dtype=float)[st]
        p["f0"].value = np.asarray(base.p_or, dtype=float) + h_u @ curtailed + h_s @ s0
        p["balance"].value = -float(np.sum(curtailed) + np.sum(s0))
        p["limit"].value = line_limits_mw(base, self.rho_max)
        p["h_r"].value = columns(buses["gen"][g]).reshape(cls.n_line, len(g))
        p["h_u"].value, p["h_s"].value = h_u, h_s
        p["r_lo"].value, p["r_hi"].value = lo[g], hi[g]
        p["target"].value = np.asarray(observation.target_dispatch, dtype=float)[g]
        p["u_hi"].value = avail
        p["s_lo"].value, p["s_hi"].value = slo[st], shi[st]
        p["r_cost"].value = h * self.prices[g]
        p["u_cost"].value = h * self.curtailment_price
        p["s_cost"].value = h * self.storage_price
        t0 = time.perf_counter()
        for solver in SOLVERS:
            try:
                problem.solve(solver=solver)
                status = str(problem.status)
            except Exception as exc:  # noqa: BLE001 - a solver failure: the next one, else no change
                status = f"error: {type(exc).__name__}"
            if status == "optimal":
                break
        ms = (time.perf_counter() - t0) * 1e3
        if r.value is None or status not in ("optimal", "optimal_inaccurate"):
            return UnitValues(), status, ms
        rv, uv, sv = np.asarray(r.value), np.asarray(u.value), np.asarray(s.value)
        keep_r = np.abs(rv) > _NEGLIGIBLE
        pmax = cls.gen_pmax[c].astype(float)
        limits = np.clip((avail - np.clip(uv, 0.0, None)) / pmax, 0.0, 1.0)
        limits = np.where(uv > _NEGLIGIBLE, limits, 1.0)
        current = np.asarray(observation.curtailment_limit, dtype=float)[c]
        keep_c = np.abs(limits - current) > _NEGLIGIBLE
        keep_s = np.abs(sv) > _NEGLIGIBLE
        values = UnitValues((g[keep_r], rv[keep_r]), (c[keep_c], limits[keep_c]),
                            (st[keep_s], sv[keep_s]))  # fmt: skip
        return values, status, ms

    def decide(self, observation, turn: Turn, *, deterministic: bool = True, rng=None):
        """Solve the DC OPF around the next step's do-nothing state and play its set-points
        (made legal by `continuous.legal_action`)."""
        t0 = time.perf_counter()
        self.n_decisions_ += 1
        base, n_sim = self._base(observation)
        values, status, ms = self.solve(observation, base)
        action, _ = legal_action(self.action_space, observation, values,
                                 self.rules)  # fmt: skip
        self.solve_ms_.append(ms)
        self.status_.append(status)
        self.decide_ms_.append((time.perf_counter() - t0) * 1e3)
        return action, Decision("opf", simulations=n_sim)
