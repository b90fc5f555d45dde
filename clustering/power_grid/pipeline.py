"""Collection -> mutual information -> factorization -> outputs, for one grid2op env.

`run(PipelineConfig(...))` writes into ``config.out``: ``shards/`` (transitions),
``mi.npy``, ``shuffled_mi.npy``, ``unbiased_mi.npy`` (n_line x n_sub, nats; columns of
substations that are not controllable stay 0, as in the thesis), ``factorization.json``
(every line and substation assigned), one ``factorization_q<q>.json`` per thesis quantile,
figures and ``summary.md`` with stage timings and the agreement with the topology baseline
(Louvain communities of the substation graph) and, for case14, the thesis partition.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clustering.mutual_info import resolve_k
from clustering.power_grid.collect import (
    MODES,
    CollectSettings,
    Transitions,
    collect,
    cpu_count,
)
from distributed_grid2op.envs import EnvSpec, env_metadata, make_env, n_scenarios, quiet_grid2op
from distributed_grid2op.errors import UserError
from distributed_grid2op.io import atomic_path, ensure_writable_dir, write_json, write_text

DEFAULT_ENV = "l2rpn_case14_sandbox"
#: Below this many transitions a substation's MI column is mostly noise (k = N/20 < 50).
MIN_SAMPLES = 1000
METHODS = ("auto", "spectral", "spectral-eigengap", "components", "auto-threshold", "profiles")
#: Below this bipartite modularity the best co-clustering is no decomposition (one cluster).
MIN_MODULARITY = 0.05
DEFAULT_METHOD = "auto"  # profiles on sensitivity data, spectral otherwise
DEFAULT_MODE = "auto"  # thesis up to AUTO_THESIS_MAX_SUBS substations, sensitivity above
#: The thesis collection (random topologies played with env.step) is the default up to this
#: grid size (case5, case14); above it game-over transitions dominate (docs/methods.md) and
#: the default is sensitivity mode.
AUTO_THESIS_MAX_SUBS = 30
#: Transitions per substation by mode when --samples is not given.
DEFAULT_SAMPLES = {"thesis": 50_000, "simulate": 50_000, "sensitivity": 1000}
#: Random topologies per visited state in sensitivity mode when not given (the do-nothing
#: reference and the env step are shared by them).
DEFAULT_ACTIONS_PER_STATE = {"thesis": 1, "simulate": 1, "sensitivity": 8}
#: Shuffles in the MI null by mode when not given (sensitivity mode factorizes the effects;
#: its MI is only reported, one shuffle is enough there).
DEFAULT_PERMUTATIONS = {"thesis": 5, "simulate": 5, "sensitivity": 1}
THESIS_ENV = "l2rpn_case14_sandbox"
#: A unit column whose strongest value over the lines is below this share of the strongest
#: value of all unit columns has no significant effect: the unit joins the cluster of its
#: substation (`significant_units`).
SIGNIFICANT_SHARE = 0.1


@dataclass
class PipelineConfig:
    """Settings of one run; the defaults are the thesis' numbers with our mode and method."""

    env: str = DEFAULT_ENV
    out: Path = Path("runs/power_grid")
    n_episodes: int = 1000
    n_samples: int | None = None  # None: DEFAULT_SAMPLES of the mode
    quantiles: tuple[float, ...] = (0.7,)
    n_permutations: int | None = None  # None: DEFAULT_PERMUTATIONS of the mode
    k: float | int = 0.05
    seed: int = 29
    workers: int = 0  # 0 = all usable cores
    method: str = DEFAULT_METHOD
    mode: str = DEFAULT_MODE
    drop_terminal: bool = False
    compare_terminal: bool = True
    resume: bool = False
    thermal_limit_scale: float = 1.0
    attributes: tuple[str, ...] = ("rho",)
    max_steps: int | None = None
    episodes_per_shard: int = 10
    min_samples: int = MIN_SAMPLES
    #: A reduced action set (actions.json): the explorative policy draws from its actions.
    action_set: Path | str | None = None
    #: Number of clusters asked for (None: chosen automatically by the method).
    n_clusters: int | None = None
    #: Random topologies simulated per visited state (None: DEFAULT_ACTIONS_PER_STATE).
    actions_per_state: int | None = None
    #: Sensitivity mode: stop a substation once its effect column changes by less than this
    #: (relative) between successive shards; None: collect the whole sample budget.
    stop_tolerance: float | None = None
    #: What the explorative policy acts on (``topology`` and continuous kinds,
    #: `agents.hierarchical.ACTION_KINDS`); None: the env's default (`resolve_actions`).
    actions: tuple[str, ...] | None = None
    #: Also run the method on data whose substation labels are shuffled (a control).
    shuffled_control: bool = True
    progress: bool = True
    label: str = "default"
    timings: dict = field(default_factory=dict)

    def validate(self):
        if self.actions is not None:
            from distributed_grid2op.agents.hierarchical import ACTION_KINDS

            bad = [a for a in self.actions if a not in ACTION_KINDS]
            if bad or not self.actions:
                raise UserError(
                    f"unknown action kind(s) {', '.join(map(str, bad)) or '(none given)'}; "
                    f"choose from {', '.join(ACTION_KINDS)}"
                )
        if not self.quantiles:
            raise UserError("at least one quantile is needed")
        for q in self.quantiles:
            if not 0.0 <= float(q) < 1.0:
                raise UserError(f"quantile must be in [0, 1), got {q}")
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.mode not in ("auto", *MODES):
            raise UserError(f"unknown mode {self.mode!r}; choose one of auto, {', '.join(MODES)}")
        if self.method == "profiles" and self.mode not in ("auto", "sensitivity"):
            raise UserError("--method profiles needs --mode sensitivity (effects of actions)")
        if self.n_clusters is not None and self.n_clusters < 1:
            raise UserError("--n-clusters must be at least 1")
        if self.actions_per_state is not None and self.actions_per_state < 1:
            raise UserError("--actions-per-state must be at least 1")
        if self.stop_tolerance is not None and self.mode not in ("auto", "sensitivity"):
            raise UserError("--stop-tolerance needs --mode sensitivity (effects of actions)")
        if self.actions_per_state not in (None, 1) and self.mode == "thesis":
            raise UserError("--actions-per-state needs --mode simulate or sensitivity")
        if self.n_samples is not None and self.n_samples < 1 or self.n_episodes < 1:
            raise UserError("--samples and --episodes must be at least 1")
        if self.n_permutations is not None and self.n_permutations < 1:
            raise UserError("--permutations must be at least 1")
        if isinstance(self.k, float) and not 0.0 < self.k < 1.0:
            raise UserError(f"k must be an integer >= 1 or a fraction in (0, 1), got {self.k}")
        if isinstance(self.k, int) and self.k < 1:
            raise UserError(f"k must be an integer >= 1 or a fraction in (0, 1), got {self.k}")
        n = self.samples_for(self.mode)
        try:  # refused now, not after the whole collection
            resolve_k(self.k, n)
        except ValueError:
            raise UserError(
                f"k = {self.k} neighbours needs more than --samples {n} transitions "
                "per substation; lower --k or raise --samples"
            ) from None

    def samples_for(self, mode: str) -> int:
        """Transitions per substation in ``mode`` (auto: the smallest of the candidates)."""
        if self.n_samples is not None:
            return int(self.n_samples)
        if mode == "auto":
            return min(DEFAULT_SAMPLES["thesis"], DEFAULT_SAMPLES["sensitivity"])
        return DEFAULT_SAMPLES[mode]

    def resolve(self, n_sub: int) -> PipelineConfig:
        """Fill the automatic choices for a grid of ``n_sub`` substations (in place)."""
        if self.mode == "auto":
            self.mode = "thesis" if n_sub <= AUTO_THESIS_MAX_SUBS else "sensitivity"
        if self.method == "auto":
            self.method = "profiles" if self.mode == "sensitivity" else "spectral"
        if self.method == "profiles" and self.mode != "sensitivity":
            raise UserError("--method profiles needs --mode sensitivity (effects of actions)")
        if self.stop_tolerance is not None and self.mode != "sensitivity":
            raise UserError("--stop-tolerance needs --mode sensitivity (effects of actions)")
        self.n_samples = self.samples_for(self.mode)
        if self.actions_per_state is None:
            self.actions_per_state = DEFAULT_ACTIONS_PER_STATE[self.mode]
        if self.n_permutations is None:
            self.n_permutations = DEFAULT_PERMUTATIONS[self.mode]
        return self


def resolve_actions(env, actions) -> tuple[str, ...]:
    """What the explorative policy acts on: ``actions`` checked against the env
    (`agents.hierarchical.check_actions`, canonical order), or by default topology when the
    env has set-bus actions, else every continuous kind it supports. The default stays
    topology only where topology exists, so that the substation runs (the thesis case14
    partition among them) keep their outputs; ``--actions topology,redispatch,...`` adds the
    unit columns."""
    from distributed_grid2op.agents.hierarchical import check_actions, has_topology_actions
    from distributed_grid2op.continuous import supported_kinds

    if actions is None:
        actions = ("topology",) if has_topology_actions(env) else supported_kinds(env)
        if not actions:
            raise UserError(
                f"env {env.env_name!r} has neither topology (set-bus) actions nor units to "
                "redispatch, curtail or store: nothing to explore"
            )
    return check_actions(env, actions)


# --------------------------------------------------------------------------- MI stage


def mi_columns(
    data: dict[int, Transitions],
    n_line: int,
    n_sub: int,
    cfg: PipelineConfig,
    label="mi",
    mapper=None,
):
    """MI of every recorded state variable with each substation's action, and its null.

    Returns (mi, shuffled_mi, unbiased_mi) of shape (n_vars, n_sub); columns of substations
    without data stay 0. The null is the mean over ``n_permutations`` shuffles. ``mapper``:
    where the column pairs run (`execution.as_mapper` of an executor; default: threads).
    """
    from clustering.mutual_info import mi_matrix, permutation_null

    subs = sorted(data)
    n_vars = data[subs[0]].next_state.shape[1]
    mi = np.zeros((n_vars, n_sub))
    null = np.zeros((n_vars, n_sub))
    jobs = cfg.workers
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(subs) * (1 + cfg.n_permutations), desc=label, unit="column")
    try:
        for s in subs:
            d = data[s]
            if len(d) < 3:
                continue
            try:
                resolve_k(cfg.k, len(d))
            except ValueError:
                continue  # too few samples for this k: column left at 0 (reported)
            x, a = d.next_state.astype(np.float64), d.action[:, None]
            mi[:, s] = mi_matrix(x, a, k=cfg.k, n_jobs=jobs, mapper=mapper)[:, 0]
            if bar is not None:
                bar.update(1)
            res = permutation_null(
                x,
                a,
                k=cfg.k,
                n_permutations=cfg.n_permutations,
                seed=cfg.seed + s,
                n_jobs=jobs,
                mapper=mapper,
            )
            null[:, s] = res.mean[:, 0]
            if bar is not None:
                bar.update(cfg.n_permutations)
    finally:
        if bar is not None:
            bar.close()
    bad = ~(np.isfinite(mi) & np.isfinite(null))
    if bad.any():
        # Safety net: the estimator is finite on near-constant variables (see mutual_info.OFFSET);
        # should a pair still be non-finite, it carries no usable information: 0 everywhere
        warnings.warn(
            f"{int(bad.sum())} non-finite MI estimate(s) (near-constant variables) set to 0",
            stacklevel=2,
        )
        mi[bad] = 0.0
        null[bad] = 0.0
    return mi, null, mi - null


# --------------------------------------------------------------------------- factorization


def factorize(
    unbiased: np.ndarray,
    columns: list[int],
    method: str,
    quantile: float,
    seed: int,
    n_clusters: int | None = None,
    halves=None,
):
    """Blocks of the (lines x controllable substations) matrix; columns re-indexed to subs.

    ``unbiased``: the unbiased MI matrix, or for ``profiles`` the effect matrix (mean size of
    each line's change under each substation's actions). ``n_clusters``: asked for (spectral
    and profiles), else chosen automatically (profiles: from ``halves``, pairs of effect
    matrices of split halves of the data, when given).
    """
    from clustering.factorization import block_diagonalize

    m = unbiased[:, columns]
    if n_clusters is not None and n_clusters > len(columns):
        raise UserError(
            f"--n-clusters {n_clusters} is more than the {len(columns)} substations with data"
        )
    if method == "profiles":
        if halves is not None:
            halves = [(a[:, columns], b[:, columns]) for a, b in halves]
        fac = block_diagonalize(m, method="profiles", n_clusters=n_clusters, halves=halves)
    elif method == "spectral" and n_clusters is not None:
        fac = block_diagonalize(m, method="spectral", n_clusters=n_clusters, random_state=seed)
    elif method == "spectral":
        fac = spectral_by_modularity(m, seed)
    elif method == "spectral-eigengap":
        fac = block_diagonalize(m, method="spectral", random_state=seed)
    elif method == "auto-threshold":
        fac = block_diagonalize(m, method="auto-threshold")
    else:
        fac = block_diagonalize(m, quantile=quantile, method="components")
    return fac


def spectral_by_modularity(matrix: np.ndarray, seed: int = 0, max_clusters: int = 8):
    """Spectral co-clustering of the clipped matrix with the number of blocks that maximises
    the weighted bipartite modularity (Barber 2007), tried from 2 to ``max_clusters``.

    The eigengap of the normalised matrix picks 1 block whenever a few noisy columns make the
    leading singular values flat; modularity compares the actual partitions instead. A best
    modularity below `MIN_MODULARITY` means no decomposition: one block.
    """
    from clustering.factorization import Factorization, bipartite_modularity, block_diagonalize

    n_max = min(max_clusters, *matrix.shape)
    best = None
    scores = {}
    for n in range(2, n_max + 1):
        fac = block_diagonalize(matrix, method="spectral", n_clusters=n, random_state=seed)
        if any(not c for c in fac.col_groups):
            continue  # a block without any input is not a sub-problem
        q = bipartite_modularity(matrix, fac.row_labels(), fac.col_labels())
        scores[n] = round(q, 4)
        if best is None or q > best[0] + 1e-9:
            best = (q, fac)
    if best is None or best[0] < MIN_MODULARITY:
        n_r, n_c = matrix.shape
        fac = Factorization([list(range(n_r))], [list(range(n_c))], "spectral")
        q = 0.0 if best is None else best[0]
    else:
        q, fac = best
    fac.method = "spectral"
    fac.params = {
        "n_clusters": fac.n_blocks,
        "selection": "bipartite modularity",
        "modularity": round(float(q), 4),
        "modularity_by_n": scores,
        "random_state": seed,
    }
    return fac


def complete_assignment(env, fac, columns: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Cluster of every substation and every line from blocks over (lines, ``columns``).

    Clusters are the blocks holding at least one controllable substation (or unit column:
    a matrix index ``>= env.n_sub``, which places no substation; units are placed by
    `assign_units`). A line in a block without substation joins the cluster of its origin
    (else extremity) substation; a substation not in the matrix joins the cluster owning most
    of its lines (ties: lowest cluster). Repeated until stable; anything left joins cluster 0.
    """
    from distributed_grid2op.grid import line_endpoints

    n_line, n_sub = int(env.n_line), int(env.n_sub)
    sub_c = -np.ones(n_sub, int)
    line_c = -np.ones(n_line, int)
    blocks = [(r, c) for r, c in zip(fac.row_groups, fac.col_groups) if c]
    for b, (rows, cols) in enumerate(blocks):
        for j in cols:
            if columns[j] < n_sub:
                sub_c[columns[j]] = b
        for i in rows:
            if i < n_line:
                line_c[i] = b
    orig, ext = line_endpoints(env)
    changed = True
    while changed:
        changed = False
        for s in np.flatnonzero(sub_c < 0):
            mine = line_c[(orig == s) | (ext == s)]
            mine = mine[mine >= 0]
            if mine.size:
                sub_c[s] = int(np.argmax(np.bincount(mine)))
                changed = True
        for ln in np.flatnonzero(line_c < 0):
            for s in (orig[ln], ext[ln]):
                if sub_c[s] >= 0:
                    line_c[ln] = sub_c[s]
                    changed = True
                    break
    sub_c[sub_c < 0] = 0
    line_c[line_c < 0] = 0
    # renumber clusters in order of their smallest substation (a stable layout)
    order = sorted(
        set(sub_c.tolist()) | set(line_c.tolist()),
        key=lambda c: (np.flatnonzero(sub_c == c).min(initial=n_sub), c),
    )
    remap = {c: i for i, c in enumerate(order)}
    return np.array([remap[c] for c in sub_c]), np.array([remap[c] for c in line_c])


@dataclass(frozen=True)
class UnitColumns:
    """The unit columns of the matrices: matrix column ``n_sub + j`` is unit ``keys[j]``
    (`collect.unit_key` names), after the ``n_sub`` substation columns."""

    keys: tuple[str, ...]
    n_sub: int

    def index(self, key: str) -> int:
        return self.n_sub + self.keys.index(key)

    @property
    def indices(self) -> list[int]:
        return [self.n_sub + j for j in range(len(self.keys))]

    def label(self, column: int) -> str:
        """``sub 3`` or the unit's name, for matrix column ``column``."""
        return f"sub {column}" if column < self.n_sub else self.keys[column - self.n_sub]


def significant_units(matrix: np.ndarray, units: UnitColumns) -> list[int]:
    """The unit columns (matrix indices) with a significant effect: their strongest value over
    the lines (the matrix's rows) at least `SIGNIFICANT_SHARE` of the strongest value of all
    unit columns. Units are compared with units, not with substations: a unit's effect in one
    step (a ramp-limited redispatch, a few MW of storage) is far below a topology change's
    (measured on case14 in sensitivity mode: strongest unit effect 0.049 of rho, strongest
    substation 0.56), so every unit would look ineffective next to them."""
    if not units.keys:
        return []
    top = float(np.max(matrix[:, units.indices]))
    if top <= 0:
        return []
    return [c for c in units.indices if float(np.max(matrix[:, c])) >= SIGNIFICANT_SHARE * top]


def assign_units(env, matrix, sub_c, line_c, units: UnitColumns, significant):
    """Cluster of every generator and storage unit, and how each unit column got it.

    A unit column with a significant effect (``significant``, matrix indices,
    `significant_units`) joins the cluster whose lines it affects most: the largest sum of
    its clipped column over the cluster's lines (the whole effect on that agent's lines;
    ties: lowest cluster). Anything else (no significant effect, or no column: a kind not
    collected, a generator nobody dispatches) joins the cluster of its substation. The same
    rule whether the lines were clustered with substation columns or with the unit columns
    themselves (no topology). Returns (generator clusters, storage clusters, report: unit
    names by rule).
    """
    from clustering.power_grid.collect import parse_unit_key

    cls = type(env)
    gen_c = np.asarray(sub_c)[np.asarray(cls.gen_to_subid, int)].copy()
    sto_c = np.asarray(sub_c)[np.asarray(cls.storage_to_subid, int)].copy()
    n_clusters = int(max(np.max(sub_c), np.max(line_c))) + 1
    report = {"effect": [], "substation": []}
    for column in units.indices:
        key = units.label(column)
        if column not in significant:
            report["substation"].append(key)
            continue
        kind, uid = parse_unit_key(key)
        weight = np.clip(matrix[: len(line_c), column], 0.0, None)
        score = np.bincount(line_c, weights=weight, minlength=n_clusters)
        (sto_c if kind == "storage" else gen_c)[uid] = int(np.argmax(score))
        report["effect"].append(key)
    return gen_c, sto_c, report


def factorization_document(
    env_name, method, params, sub_c, line_c, gen_c=None, storage_c=None
) -> dict:
    """``factorization.json`` content from complete labels: format 1, or format 2 with the
    clusters' generators and storage units when ``gen_c`` and ``storage_c`` are given."""
    from distributed_grid2op.factorization_file import Cluster, FactorizationFile

    labels = [sub_c, line_c] + ([] if gen_c is None else [gen_c, storage_c])
    n_clusters = int(max(np.max(x, initial=0) for x in labels)) + 1
    clusters = []
    for c in range(n_clusters):
        units = {}
        if gen_c is not None:
            units = {
                "generators": tuple(np.flatnonzero(np.asarray(gen_c) == c).tolist()),
                "storages": tuple(np.flatnonzero(np.asarray(storage_c) == c).tolist()),
            }
        clusters.append(
            Cluster(
                tuple(np.flatnonzero(sub_c == c).tolist()),
                tuple(np.flatnonzero(line_c == c).tolist()),
                **units,
            )
        )
    return FactorizationFile(tuple(clusters), env_name, method, params).to_dict()


def louvain_baseline(env, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Topology-only baseline: Louvain communities of the substation graph (lines join the
    community of their origin substation)."""
    import networkx as nx

    from distributed_grid2op.grid import line_endpoints, substation_graph

    comms = nx.community.louvain_communities(substation_graph(env), seed=seed)
    sub_c = np.zeros(int(env.n_sub), int)
    for c, members in enumerate(sorted(comms, key=min)):
        sub_c[list(members)] = c
    orig, _ = line_endpoints(env)
    return sub_c, sub_c[orig]


def greedy_modularity_baseline(env, n_communities: int | None = None):
    """Topology-only baseline: greedy modularity communities of the substation graph (Clauset-
    Newman-Moore), ``n_communities`` of them if given, else the modularity optimum."""
    import networkx as nx

    from distributed_grid2op.grid import line_endpoints, substation_graph

    g = substation_graph(env)
    kw = {} if n_communities is None else {"cutoff": n_communities, "best_n": n_communities}
    comms = nx.community.greedy_modularity_communities(g, weight="weight", **kw)
    sub_c = np.zeros(int(env.n_sub), int)
    for c, members in enumerate(sorted(comms, key=min)):
        sub_c[list(members)] = c
    orig, _ = line_endpoints(env)
    return sub_c, sub_c[orig]


def reference_factorizations(env, env_name: str, baselines: dict | None = None,
                             areas=None) -> dict[str, dict]:  # fmt: skip
    """``factorization.json`` documents of the reference partitions the method is compared
    with, to train agents on them (the variants of `docs/results.md`): the topology-only
    baselines (``{name: (sub_c, line_c)}``; default: greedy modularity, automatic and, where
    the env has operator areas, with as many communities as areas) and the operator's areas
    (``areas``: area of every substation; a line joins the area of its origin substation).
    The pipeline writes them to ``references/<name>.json``."""
    from distributed_grid2op.grid import line_endpoints, operator_areas

    if baselines is None:
        areas = operator_areas(env) if areas is None else areas
        baselines = {"greedy_modularity": greedy_modularity_baseline(env)}
        if areas is not None:
            n = int(areas.max()) + 1
            baselines[f"greedy_modularity_{n}"] = greedy_modularity_baseline(env, n)
    docs = {key: factorization_document(env_name, key, {"reference": True}, *labels)
            for key, labels in baselines.items()}  # fmt: skip
    if areas is not None:
        areas = np.asarray(areas, dtype=int)
        orig, _ = line_endpoints(env)
        docs["areas"] = factorization_document(env_name, "areas", {"reference": True},
                                               areas, areas[orig])  # fmt: skip
    return docs


def area_agreement(sub_c, area) -> dict:
    """How a substation partition agrees with reference areas: ARI, homogeneity (1 = every
    cluster inside one area), completeness, and per cluster its size, its main area and the
    share of its substations in that area (purity)."""
    from sklearn.metrics import adjusted_rand_score, completeness_score, homogeneity_score

    sub_c, area = np.asarray(sub_c), np.asarray(area)
    clusters = []
    for c in range(int(sub_c.max()) + 1):
        members = area[sub_c == c]
        if members.size == 0:
            continue
        counts = np.bincount(members, minlength=int(area.max()) + 1)
        clusters.append(
            {
                "size": int(members.size),
                "area": int(np.argmax(counts)),
                "purity": round(float(counts.max() / members.size), 4),
            }
        )
    return {
        "ari": float(adjusted_rand_score(area, sub_c)),
        "homogeneity": float(homogeneity_score(area, sub_c)),
        "completeness": float(completeness_score(area, sub_c)),
        "clusters": clusters,
        "min_purity": min(c["purity"] for c in clusters),
        "min_size": min(c["size"] for c in clusters),
    }


def _column_substations(env, units: UnitColumns | None):
    """Substation of each matrix column: itself, or the substation of the column's unit."""
    if units is None:
        return None
    from clustering.power_grid.collect import parse_unit_key

    cls = type(env)

    def origin(column: int) -> int:
        if column < units.n_sub:
            return int(column)
        kind, uid = parse_unit_key(units.label(column))
        return int((cls.storage_to_subid if kind == "storage" else cls.gen_to_subid)[uid])

    return origin


def _key(column: int, n_sub: int, name_of):
    """Summary key of a matrix column: the substation id, or the unit's name."""
    return int(column) if column < n_sub else name_of(column)


def locality(env, matrix: np.ndarray, columns: list[int], top: int = 5, origin=None) -> dict:
    """Mean hop distance (substation graph) from each column's substation to its ``top``
    lines by ``matrix`` (a line's distance: to its nearer end), against all lines (what
    random lines would give). ``origin``: the substation of a column (default: the column
    itself; unit columns: `_column_substations`). Evaluation only."""
    import networkx as nx

    from distributed_grid2op.grid import line_endpoints, substation_graph

    hops = dict(nx.all_pairs_shortest_path_length(substation_graph(env)))
    orig, ext = line_endpoints(env)
    far = int(env.n_sub)  # a line in another connected component

    def dist(s, ln):
        return min(hops[s].get(int(orig[ln]), far), hops[s].get(int(ext[ln]), far))

    top_d, all_d = [], []
    for c in columns:
        s = int(c) if origin is None else origin(c)
        best = np.argsort(-matrix[:, c], kind="stable")[:top]
        top_d.append(np.mean([dist(s, ln) for ln in best]))
        all_d.append(np.mean([dist(s, ln) for ln in range(matrix.shape[0])]))
    return {
        "top": top,
        "mean_hops_top": round(float(np.mean(top_d)), 3),
        "mean_hops_random": round(float(np.mean(all_d)), 3),
    }


#: Random splits of each substation's episodes into halves for the automatic number of
#: clusters (`clustering.factorization.reproducible_n_clusters`).
SPLIT_HALVES = 5


def _typical(rows: np.ndarray) -> np.ndarray:
    """Median absolute effect per line: the typical size of a substation's effect, which rare
    large effects (a far-reaching redistribution) do not move (the RMS they dominate gave a
    partition that changed between seeds of the same collection: docs/methods.md)."""
    return np.median(np.abs(rows), axis=0)


def effect_rows(data: dict[int, Transitions], n_line: int) -> dict[int, tuple]:
    """Per substation with data: its (non-diverging transitions x lines) effects on the line
    loadings (next - do-nothing next) and the episode of every row."""
    rows = {}
    for s, d in sorted(data.items()):
        keep = ~d.terminal
        if keep.any():
            rows[s] = (d.effects()[keep][:, :n_line], np.asarray(d.episode_id)[keep])
    return rows


def effect_matrix(rows: dict[int, tuple], n_line: int, n_sub: int) -> np.ndarray:
    """(n_line, n_sub) typical (median absolute) effect of each substation's random topologies
    on each line's loading (sensitivity mode); substations without rows: 0."""
    eff = np.zeros((n_line, n_sub))
    for s, (e, _) in rows.items():
        eff[:, s] = _typical(e)
    return eff


def effect_halves(
    rows: dict[int, tuple], n_line: int, n_sub: int, seed: int, n_splits=SPLIT_HALVES
):
    """``n_splits`` pairs of effect matrices (`effect_matrix`), each from a random half of
    every substation's episodes and from the other half: independent data for the automatic
    number of clusters. Seeded, the same for the same rows."""
    rng = np.random.default_rng([seed, 17])
    pairs = []
    for _ in range(n_splits):
        a, b = np.zeros((n_line, n_sub)), np.zeros((n_line, n_sub))
        for s, (e, ep) in rows.items():
            eps = np.unique(ep)
            first = np.isin(ep, rng.permutation(eps)[: max(1, len(eps) // 2)])
            if first.all():  # one episode: split its rows instead
                first = np.arange(len(ep)) < len(ep) // 2
            a[:, s], b[:, s] = _typical(e[first]), _typical(e[~first])
        pairs.append((a, b))
    return pairs


def shuffled_rows(rows: dict[int, tuple], seed: int) -> dict[int, tuple]:
    """The effect rows of all substations pooled and dealt back at random (same counts, the
    episode ids of the places they land in): which substation acted is shuffled away, the rest
    is kept. A control: a method that finds structure here finds it in noise."""
    subs = sorted(rows)
    pool = np.concatenate([rows[s][0] for s in subs])
    perm = np.random.default_rng(seed).permutation(len(pool))
    out, start = {}, 0
    for s in subs:
        n = len(rows[s][0])
        out[s] = (pool[perm[start : start + n]], rows[s][1])
        start += n
    return out


def _labels_of(fact_file, n_sub, n_line):
    sub_c = np.zeros(n_sub, int)
    line_c = np.zeros(n_line, int)
    for c, cl in enumerate(fact_file.clusters):
        sub_c[list(cl.substations)] = c
        line_c[list(cl.lines)] = c
    return sub_c, line_c


def agreement(sub_a, line_a, sub_b, line_b) -> dict:
    """Adjusted Rand index between two complete partitions (substations, lines)."""
    from sklearn.metrics import adjusted_rand_score

    return {
        "ari_substations": float(adjusted_rand_score(sub_a, sub_b)),
        "ari_lines": float(adjusted_rand_score(line_a, line_b)),
    }


# --------------------------------------------------------------------------- driver


class _Timer:
    def __init__(self, store: dict):
        self.store = store

    def __call__(self, name):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                timer.store[name] = timer.store.get(name, 0.0) + time.perf_counter() - self.t0

        return _Ctx()


def factor_columns(check: np.ndarray, matrix: np.ndarray, subs, units: UnitColumns | None):
    """Columns the method factorizes: the substations with data (nonzero in ``check``); with
    fewer than two of them (an env without topology actions, or ``--actions`` without
    ``topology``) also the unit columns with a significant effect in ``matrix``
    (`significant_units`): the lines (and through them the substations) are then clustered
    by the units' columns. Either way each unit then joins a cluster by `assign_units`."""
    sub_cols = [s for s in subs if np.any(check[:, s] != 0)]
    if units is None or len(sub_cols) >= 2:
        return sub_cols
    data = sub_cols + [c for c in units.indices if np.any(check[:, c] != 0)]
    return sub_cols + [c for c in significant_units(matrix, units) if c in data]


def _decompose(
    env, env_name, unbiased, columns, cfg: PipelineConfig, method: str, quantile: float,
    halves=None, units: UnitColumns | None = None,
):  # fmt: skip
    n_clusters = cfg.n_clusters if method in ("spectral", "profiles") else None
    fac = factorize(unbiased, columns, method, quantile, cfg.seed, n_clusters, halves)
    sub_c, line_c = complete_assignment(env, fac, columns)
    params = {k: v for k, v in fac.params.items() if isinstance(v, (int, float, str, bool, dict))}
    params.update(
        {
            "mode": cfg.mode,
            "k": cfg.k,
            "n_samples": cfg.n_samples,
            "n_permutations": cfg.n_permutations,
            "drop_terminal": cfg.drop_terminal,
            "seed": cfg.seed,
        }
    )
    name = {"components": "quantile-threshold-components"}.get(method, method)
    if units is None:
        return fac, sub_c, line_c, factorization_document(env_name, name, params, sub_c, line_c)
    significant = significant_units(unbiased, units)
    gen_c, sto_c, report = assign_units(env, unbiased, sub_c, line_c, units, significant)
    params["actions"] = list(cfg.actions or ())
    params["unit_assignment"] = {
        "rule": "effect: the cluster whose lines it affects most (sum over the lines); "
        "substation: no effect above significant_share of the strongest unit's (or no "
        "column), its substation's cluster",
        "significant_share": SIGNIFICANT_SHARE,
        **report,
    }
    doc = factorization_document(env_name, name, params, sub_c, line_c, gen_c, sto_c)
    return fac, sub_c, line_c, doc


def _action_set_substations(path, env, controllable: list[int]):
    """(substations to collect, `CollectActionSet`, note or None) for ``--action-set``.

    Only the controllable substations with actions in the file are collected: one without
    any would explore do-nothing alone, a constant action column whose MI is 0 by definition
    (collection time for nothing). Left out of the matrix, such a substation is assigned to
    the cluster owning most of its lines by `complete_assignment`, like an uncontrollable
    one, so factorization.json still holds every substation and line exactly once.
    """
    from clustering.power_grid.collect import CollectActionSet

    action_set = CollectActionSet.load(path, env=env)
    have = set(action_set.substations())
    subs = [s for s in controllable if s in have]
    if len(subs) < 2:
        raise UserError(
            f"{path}: actions on {len(subs)} controllable substation(s) {subs}: nothing to "
            "factorize (use a larger action set)"
        )
    left = [s for s in controllable if s not in have]
    note = None
    if left:
        note = (
            f"the action set has no action on controllable substation(s) {left}: not collected, "
            "assigned to the cluster owning most of their lines"
        )
    return subs, action_set, note


def run(cfg: PipelineConfig, executor=None) -> dict:
    """Run the whole pipeline; return the summary dict (also written as JSON and markdown).

    ``executor``: the `distributed_grid2op.execution.Executor` of the collection (default:
    one with ``cfg.workers`` workers, made and closed here); MI uses as many threads.
    """
    cfg.validate()
    from distributed_grid2op.factorization_file import load_factorization, parse_factorization
    from distributed_grid2op.grid import controllable_substations, operator_areas

    out = ensure_writable_dir(cfg.out)
    timer = _Timer(cfg.timings)
    t_start = time.perf_counter()
    workers = executor.workers if executor is not None else (cfg.workers or cpu_count())
    cfg.workers = workers
    notes: list[str] = []

    with timer("env"), quiet_grid2op():
        env = make_env(cfg.env, thermal_limit_scale=cfg.thermal_limit_scale)
        meta = env_metadata(env, EnvSpec(str(cfg.env), thermal_limit_scale=cfg.thermal_limit_scale))
        env_name = Path(str(cfg.env)).name if Path(str(cfg.env)).is_dir() else str(cfg.env)
        cfg.actions = resolve_actions(env, cfg.actions)
        cfg.resolve(int(env.n_sub))
        from clustering.power_grid.collect import unit_columns

        subs = controllable_substations(env) if "topology" in cfg.actions else []
        unit_keys = unit_columns(env, cfg.actions)
        if "topology" in cfg.actions and len(subs) < 2 and not unit_keys:
            raise UserError(
                f"{cfg.env} has {len(subs)} controllable substation(s): nothing to factorize"
            )
        if len(subs) + len(unit_keys) < 2:
            raise UserError(
                f"{cfg.env}: {len(subs) + len(unit_keys)} controllable substation(s) and "
                f"unit(s) for --actions {','.join(cfg.actions)}: nothing to factorize"
            )
        if cfg.action_set is not None and "topology" not in cfg.actions:
            raise UserError("--action-set is a set of topologies: it needs topology in --actions")
        action_set = None
        if cfg.action_set is not None:
            subs, action_set, note = _action_set_substations(cfg.action_set, env, subs)
            if note:
                notes.append(note)
                print(f"note: {note}")
        scen = n_scenarios(env)
    if scen < cfg.n_episodes:
        notes.append(
            f"the env has {scen} scenario(s) for up to {cfg.n_episodes} episodes per substation: "
            "episodes cycle through them with distinct env and agent seeds"
        )
        print(f"note: {notes[-1]}")

    spec = EnvSpec(
        str(meta.get("env_path") or cfg.env), thermal_limit_scale=cfg.thermal_limit_scale
    )
    settings = CollectSettings(
        spec=spec,
        substations=tuple(subs),
        n_episodes=cfg.n_episodes,
        n_samples=cfg.n_samples,
        mode=cfg.mode,
        attributes=cfg.attributes,
        seed=cfg.seed,
        max_steps=cfg.max_steps,
        episodes_per_shard=None if cfg.mode == "sensitivity" else cfg.episodes_per_shard,
        action_set=action_set,
        actions_per_state=cfg.actions_per_state,
        stop_tolerance=cfg.stop_tolerance,
        units=tuple(unit_keys),
    )
    with timer("collect"):
        data = collect(
            settings,
            out / "shards",
            workers=workers,
            executor=executor,
            resume=cfg.resume,
            progress=cfg.progress,
            n_scenarios=scen,
        )
    units = UnitColumns(tuple(unit_keys), int(env.n_sub)) if unit_keys else None
    # matrix columns: the substations (by id), then the unit columns (`UnitColumns`)
    data = {(s if units is None or s not in units.keys else units.index(s)): d
            for s, d in data.items()}  # fmt: skip
    name_of = units.label if units is not None else (lambda c: f"sub {c}")
    counts = {s: len(d) for s, d in data.items()}
    throughput = {}
    if cfg.mode != "thesis" and cfg.timings.get("collect", 0) > 0 and not cfg.resume:
        # simulate calls: one per sample, plus the shared do-nothing reference per state
        per_sample = 1 + (1 / cfg.actions_per_state if cfg.mode == "sensitivity" else 0)
        rate = sum(counts.values()) / cfg.timings["collect"] / workers
        throughput = {
            "samples_per_s_per_worker": round(rate, 1),
            "simulate_calls_per_s_per_worker": round(rate * per_sample, 1),
        }
    low = [s for s, n in counts.items() if n < min(cfg.min_samples, cfg.n_samples)]
    if cfg.stop_tolerance is not None:  # fewer samples by design: the columns were stable
        low = []
    for s in low:
        what = f"substation {s}" if s < int(env.n_sub) else f"unit column {name_of(s)}"
        msg = (
            f"{what} has only {counts[s]} transitions (< {cfg.min_samples}): its MI column is "
            "noisy; raise --episodes or use --mode simulate"
        )
        print(f"warning: {msg}", file=sys.stderr)
        notes.append(msg)
    terminal_share = {s: float(d.terminal.mean()) if len(d) else 0.0 for s, d in data.items()}
    used = {s: d.drop_terminal() for s, d in data.items()} if cfg.drop_terminal else data

    n_line, n_sub = int(env.n_line), int(env.n_sub)
    n_cols = n_sub + (0 if units is None else len(units.keys))
    # MI pairs: local threads (the kernels release the GIL, no data shipped); on a cluster,
    # the executor's workers (the data crosses once per worker and call)
    mapper = None
    if executor is not None and executor.backend_name not in ("serial", "processes"):
        from distributed_grid2op.execution import as_mapper

        mapper = as_mapper(executor)
    with timer("mutual information + null"):
        mi, shuffled, unbiased = mi_columns(used, n_line, n_cols, cfg, mapper=mapper)
    saved = [("mi", mi), ("shuffled_mi", shuffled), ("unbiased_mi", unbiased)]
    effects = rows = halves = None
    if cfg.mode == "sensitivity":
        with timer("sensitivities"):
            rows = effect_rows(data, n_line)
            effects = effect_matrix(rows, n_line, n_cols)
            if cfg.method == "profiles" and cfg.n_clusters is None:
                halves = effect_halves(rows, n_line, n_cols, cfg.seed)
        saved.append(("effects", effects))
    for name, matrix in saved:
        with atomic_path(out / f"{name}.npy", suffix=".npy") as tmp:
            np.save(tmp, matrix)
    rows_are_lines = list(cfg.attributes) == ["rho"]
    main_matrix = effects if cfg.method == "profiles" else unbiased
    columns = factor_columns(effects if cfg.method == "profiles" else mi, main_matrix, subs, units)
    if len(columns) < 2:
        raise UserError(
            "fewer than two substations (or units with a significant effect) have enough "
            "transitions for the MI estimate; raise --samples"
        )

    results = {}
    with timer("factorization"):
        if not rows_are_lines:
            raise UserError(
                "factorization.json needs line loadings: use the default attributes ('rho')"
            )
        fac, sub_c, line_c, doc = _decompose(
            env, env_name, main_matrix, columns, cfg, cfg.method, cfg.quantiles[0], halves, units
        )
        path = write_json(out / "factorization.json", doc)
        load_factorization(path, env=env)  # validated: every line and substation (unit) once
        results["main"] = (fac, sub_c, line_c, doc)
        for q in cfg.quantiles:
            qfac, qs, ql, qdoc = _decompose(
                env, env_name, unbiased, columns, cfg, "components", q, units=units
            )
            write_json(out / f"factorization_q{q:g}.json", qdoc)
            parse_factorization(qdoc, n_sub=n_sub, n_line=n_line, n_gen=int(env.n_gen),
                                n_storage=int(env.n_storage))  # fmt: skip
            results[f"q{q:g}"] = (qfac, qs, ql, qdoc)
        base_s, base_l = louvain_baseline(env, cfg.seed)
        agree = {"louvain": agreement(sub_c, line_c, base_s, base_l)}
        thesis = None
        if env_name == THESIS_ENV or Path(str(meta.get("env_path", ""))).name == THESIS_ENV:
            thesis = _labels_of(load_factorization(None), n_sub, n_line)
            agree["thesis"] = agreement(sub_c, line_c, *thesis)
            agree["louvain_vs_thesis"] = agreement(base_s, base_l, *thesis)
        for key, (_, qs, ql, _) in results.items():
            if key != "main" and thesis is not None:
                agree[f"thesis_{key}"] = agreement(qs, ql, *thesis)
        areas = operator_areas(env)
        baselines = {
            "louvain": (base_s, base_l),
            "greedy_modularity": greedy_modularity_baseline(env),
        }
        agree["greedy_modularity"] = agreement(sub_c, line_c, *baselines["greedy_modularity"])
        if areas is not None:
            n_areas = int(areas.max()) + 1
            baselines[f"greedy_modularity_{n_areas}"] = greedy_modularity_baseline(env, n_areas)
        for key, doc_ref in reference_factorizations(env, env_name, baselines, areas).items():
            write_json(out / "references" / f"{key}.json", doc_ref)
        area_report = None
        if areas is not None:
            area_report = {
                "n_areas": int(areas.max()) + 1,
                "sizes": np.bincount(areas).tolist(),
                "method": area_agreement(sub_c, areas),
                "baselines": {k: area_agreement(bs, areas) for k, (bs, _) in baselines.items()},
            }
        origin = _column_substations(env, units)
        local = {"mi": locality(env, unbiased, columns, origin=origin)}
        if effects is not None:
            local["effects"] = locality(env, effects, columns, origin=origin)

    control = None
    if effects is not None and cfg.shuffled_control:
        with timer("shuffled control"):
            rows0 = shuffled_rows(rows, cfg.seed)
            eff0 = effect_matrix(rows0, n_line, n_cols)
            halves0 = None if halves is None else effect_halves(rows0, n_line, n_cols, cfg.seed)
            _, s0, l0, doc0 = _decompose(
                env, env_name, eff0, columns, cfg, "profiles", 0.0, halves0, units
            )
            control = {
                "what": "profiles on the effects with the acting substation shuffled",
                "n_clusters": len(doc0["clusters"]),
                "vs_main": agreement(sub_c, line_c, s0, l0),
            }
            if areas is not None:
                control["vs_areas"] = area_agreement(s0, areas)

    comparison = None
    terminal = any(d.terminal.any() for d in data.values())
    if cfg.compare_terminal and cfg.mode != "sensitivity" and terminal:
        with timer("terminal comparison"):
            other = (
                {s: d.drop_terminal() for s, d in data.items()} if not cfg.drop_terminal else data
            )
            _, _, unb2 = mi_columns(other, n_line, n_cols, cfg, label="mi (terminal variant)")
            cols2 = factor_columns(unb2, unb2, subs, units)
            if len(cols2) >= 2:
                _, s2, l2, doc2 = _decompose(
                    env, env_name, unb2, cols2, cfg, cfg.method, cfg.quantiles[0], units=units
                )
                comparison = {
                    "variant": "terminal transitions dropped"
                    if not cfg.drop_terminal
                    else "terminal transitions kept",
                    "clusters": doc2["clusters"],
                    "vs_main": agreement(sub_c, line_c, s2, l2),
                }
                if thesis is not None:
                    comparison["vs_thesis"] = agreement(s2, l2, *thesis)

    with timer("figures"):
        figures = _figures(
            out, env, (mi, shuffled, unbiased), columns, results, sub_c, line_c, cfg, effects,
            name_of,
        )  # fmt: skip

    cfg.timings["total"] = time.perf_counter() - t_start
    summary = {
        "env": env_name,
        "env_metadata": meta,
        "mode": cfg.mode,
        "method": doc["method"],
        "settings": {
            "n_episodes": cfg.n_episodes,
            "n_samples": cfg.n_samples,
            "quantiles": list(cfg.quantiles),
            "n_permutations": cfg.n_permutations,
            "k": cfg.k,
            "seed": cfg.seed,
            "workers": workers,
            "drop_terminal": cfg.drop_terminal,
            "label": cfg.label,
            "thermal_limit_scale": cfg.thermal_limit_scale,
            "actions_per_state": cfg.actions_per_state,
            "n_clusters": cfg.n_clusters,
            **({} if cfg.stop_tolerance is None else {"stop_tolerance": cfg.stop_tolerance}),
            **(
                {"action_set": {"source": str(cfg.action_set), **action_set.identity()}}
                if action_set is not None
                else {}
            ),
        },
        "actions": list(cfg.actions),
        **({"unit_columns": list(units.keys)} if units is not None else {}),
        "controllable_substations": subs,
        "samples": {_key(s, n_sub, name_of): int(n) for s, n in counts.items()},
        "episodes": {_key(s, n_sub, name_of): int(d.n_episodes) for s, d in data.items()},
        "terminal_share": {
            _key(s, n_sub, name_of): round(v, 4) for s, v in terminal_share.items()
        },  # fmt: skip
        "clusters": doc["clusters"],
        "factorization_params": doc["params"],
        "quantile_clusters": {k: v[3]["clusters"] for k, v in results.items() if k != "main"},
        "agreement": agree,
        "areas": area_report,
        "locality": local,
        "shuffled_control": control,
        "terminal_comparison": comparison,
        "timings_s": {k: round(v, 2) for k, v in cfg.timings.items()},
        "timings_throughput": throughput,
        "notes": notes,
        "figures": figures,
    }
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", summary_markdown(summary))
    env.close()
    return summary


def _unit_labels(doc: dict, env) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Cluster of every generator and storage unit of a format 2 document (None, None in
    format 1)."""
    if "generators" not in doc["clusters"][0]:
        return None, None
    gen_c, sto_c = np.zeros(int(env.n_gen), int), np.zeros(int(env.n_storage), int)
    for c, cluster in enumerate(doc["clusters"]):
        gen_c[cluster["generators"]] = c
        sto_c[cluster["storages"]] = c
    return gen_c, sto_c


def _figures(out, env, matrices, columns, results, sub_c, line_c, cfg, effects=None,
             name_of=None) -> list[str]:  # fmt: skip
    from clustering.plots import plot_binarized, plot_blocks, plot_mi_heatmap
    from clustering.power_grid.figures import plot_grid_clusters

    mi, shuffled, unbiased = matrices
    name_of = name_of or (lambda c: f"sub {c}")
    rows = [f"line {i}" for i in range(mi.shape[0])]
    cols = [name_of(s) for s in columns]
    # the MI maps also show the unit columns that the method did not factorize
    shown = columns + [c for c in range(int(env.n_sub), mi.shape[1]) if c not in columns]
    shown_names = [name_of(c) for c in shown]
    gen_c, sto_c = _unit_labels(results["main"][3], env)
    fig_dir = out / "figures"
    files = [
        plot_mi_heatmap(
            mi[:, shown],
            fig_dir / "mi.png",
            rows,
            shown_names,
            title="MI(line loading', action) (nats)",
        ),  # fmt: skip
        plot_mi_heatmap(
            shuffled[:, shown],
            fig_dir / "shuffled_mi.png",
            rows,
            shown_names,
            title="shuffled MI: permutation null (nats)",
        ),
        plot_mi_heatmap(
            unbiased[:, shown],
            fig_dir / "unbiased_mi.png",
            rows,
            shown_names,
            title="unbiased MI = MI - shuffled MI (nats)",
        ),
        plot_blocks(
            unbiased[:, columns] if effects is None else np.log10(effects[:, columns] + 1e-6),
            results["main"][0],
            fig_dir / "blocks.png",
            rows,
            cols,
            title=f"blocks ({results['main'][3]['method']})"
            + ("" if effects is None else ": log10 RMS effect on rho"),
        ),
        plot_grid_clusters(
            env,
            sub_c,
            line_c,
            fig_dir / "grid_clusters.png",
            title=f"{results['main'][3]['method']} clusters ({cfg.mode} mode)",
            gen_cluster=gen_c,
            storage_cluster=sto_c,
            decided=[c for c in columns if c < int(env.n_sub)],
        ),
    ]
    for key, (fac, _, _, _) in results.items():
        if key == "main":
            continue
        files.append(
            plot_binarized(
                fac.binary,
                fig_dir / f"binarized_{key}.png",
                rows,
                cols,
                title=f"binarized at column quantile {key[1:]}",
            )
        )
        files.append(
            plot_blocks(
                unbiased[:, columns],
                fac,
                fig_dir / f"blocks_{key}.png",
                rows,
                cols,
                title=f"components at quantile {key[1:]}",
            )
        )
    return [str(Path(f).relative_to(out)) for f in files]


def _fmt_clusters(clusters) -> str:
    if clusters and "generators" in clusters[0]:
        return "\n".join(
            f"| {i} | {c['substations']} | {c['lines']} | {c['generators']} | {c['storages']} |"
            for i, c in enumerate(clusters)
        )
    return "\n".join(f"| {i} | {c['substations']} | {c['lines']} |" for i, c in enumerate(clusters))


def _clusters_header(clusters) -> list[str]:
    if clusters and "generators" in clusters[0]:
        return [
            "| cluster | substations | lines | generators | storage units |",
            "|---|---|---|---|---|",
        ]
    return ["| cluster | substations | lines |", "|---|---|---|"]


def _area_row(name: str, a: dict) -> str:
    sizes = ", ".join(f"{c['size']} ({c['purity']:.0%} in area {c['area']})" for c in a["clusters"])
    return (
        f"| {name} | {len(a['clusters'])} | {a['ari']:.3f} | {a['homogeneity']:.3f} | "
        f"{a['completeness']:.3f} | {sizes} |"
    )


def _areas_markdown(s: dict) -> list[str]:
    """Sections on the operator areas, locality and the shuffled control (when present)."""
    out = []
    ar = s.get("areas")
    if ar:
        out += [
            "## Agreement with the operator's areas",
            "",
            f"The env's rules define {ar['n_areas']} areas ({ar['sizes']} substations); "
            "no method sees them. Homogeneity 1 = every cluster inside one area.",
            "",
            "| partition | clusters | ARI | homogeneity | completeness | "
            "substations per cluster (share in its main area) |",
            "|---|---|---|---|---|---|",
            _area_row(f"**{s['method']}** (this run)", ar["method"]),
        ]
        out += [_area_row(f"{k} (topology only)", a) for k, a in ar["baselines"].items()]
        out.append("")
    loc = s.get("locality")
    if loc:
        out += [
            "## Locality",
            "",
            "Mean hops from a controllable substation to its top lines (a line: its nearer end) "
            "vs to all lines (what random lines give):",
            "",
            "| matrix | top lines | mean hops (top) | mean hops (all lines) |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {k} | {v['top']} | {v['mean_hops_top']:.2f} | {v['mean_hops_random']:.2f} |"
            for k, v in loc.items()
        ]
        out.append("")
    ctl = s.get("shuffled_control")
    if ctl:
        vs_areas = f", ARI vs areas {ctl['vs_areas']['ari']:.3f}" if "vs_areas" in ctl else ""
        out += [
            "## Shuffled control",
            "",
            f"{ctl['what']}: {ctl['n_clusters']} cluster(s), ARI vs this run "
            f"{ctl['vs_main']['ari_substations']:.3f} (substations){vs_areas}.",
            "",
        ]
    return out


def _units_markdown(s: dict) -> list[str]:
    """How the units were clustered (runs with unit columns only)."""
    if "unit_columns" not in s:
        return []
    how = s["factorization_params"].get("unit_assignment", {})
    return [
        f"Actions explored: {', '.join(s['actions'])}; unit columns {', '.join(s['unit_columns'])} "
        f"(applied values). Units in the cluster whose lines they affect most: "
        f"{how.get('effect') or 'none'}; in their substation's cluster (no effect above "
        f"{how.get('significant_share')} of the strongest unit's): "
        f"{how.get('substation') or 'none'}.",
        "",
    ]


def summary_markdown(s: dict) -> str:
    """Human-readable `summary.md`."""
    st = s["settings"]
    lines = [
        f"# Power-grid factorization: {s['env']}",
        "",
        f"Mode **{s['mode']}**, method **{s['method']}**, {st['n_samples']} transitions per "
        f"{'column' if 'unit_columns' in s else 'substation'} "
        f"({st.get('actions_per_state', 1)} action(s) per state), k = {st['k']}, "
        f"{st['n_permutations']} shuffle(s) in the null, seed {st['seed']}, {st['workers']} worker(s), "
        f"thermal limits x {st['thermal_limit_scale']}, terminal transitions "
        f"{'dropped' if st['drop_terminal'] else 'kept'}.",
        *(
            [
                "",
                f"Action set `{st['action_set']['source']}` (digest {st['action_set']['digest']}, "
                f"{st['action_set']['n_actions']} actions on substations "
                f"{st['action_set']['substations']}): the explorative policy draws from them.",
            ]
            if "action_set" in st
            else []
        ),
        "",
        "## Clusters (factorization.json)",
        "",
        *_units_markdown(s),
        *_clusters_header(s["clusters"]),
        _fmt_clusters(s["clusters"]),
        "",
        "## Agreement (adjusted Rand index, 1 = identical)",
        "",
        "| compared with | substations | lines |",
        "|---|---|---|",
    ]
    for key, a in s["agreement"].items():
        lines.append(f"| {key} | {a['ari_substations']:.3f} | {a['ari_lines']:.3f} |")
    lines += [
        "",
        "`louvain`, `greedy_modularity`: topology-only baselines (Louvain / greedy modularity "
        "communities of the substation graph); "
        "`thesis`: the partition the thesis trained on (case14 only); `thesis_q<q>`: the "
        "thesis method (column quantile + connected components) on the same matrix; "
        "`louvain_vs_thesis`: the topology-only baseline itself vs the thesis partition.",
        "",
    ]
    lines += _areas_markdown(s)
    lines += [
        "## Samples per controllable substation",
        "",
        "| column | transitions | episodes | terminal share |"
        if "unit_columns" in s
        else "| substation | transitions | episodes | terminal share |",
        "|---|---|---|---|",
    ]
    for sub, n in s["samples"].items():
        lines.append(f"| {sub} | {n} | {s['episodes'][sub]} | {s['terminal_share'][sub]:.3f} |")
    lines += ["", "## Thesis method (quantile + connected components)", ""]
    for key, clusters in s["quantile_clusters"].items():
        sizes = [(len(c["substations"]), len(c["lines"])) for c in clusters]
        lines.append(
            f"- quantile {key[1:]}: {len(clusters)} cluster(s), (substations, lines) per cluster {sizes}"
        )
    comp = s.get("terminal_comparison")
    lines += ["", "## Terminal transitions", ""]
    if comp:
        lines.append(
            f"Same method with {comp['variant']}: ARI vs main substations "
            f"{comp['vs_main']['ari_substations']:.3f}, lines {comp['vs_main']['ari_lines']:.3f}"
            + (
                f"; vs thesis substations {comp['vs_thesis']['ari_substations']:.3f}, lines "
                f"{comp['vs_thesis']['ari_lines']:.3f}"
                if "vs_thesis" in comp
                else ""
            )
            + "."
        )
        lines += ["", *_clusters_header(comp["clusters"]), _fmt_clusters(comp["clusters"])]
    else:
        lines.append("No terminal transitions in the data (or comparison disabled).")
    lines += ["", "## Timings (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in s["timings_s"].items()]
    lines += [f"| collection: {k.replace('_', ' ')} | {v:.1f} |"
              for k, v in s.get("timings_throughput", {}).items()]  # fmt: skip
    if s["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in s["notes"]]
    lines += ["", "Figures: " + ", ".join(f"`{f}`" for f in s["figures"]), ""]
    return "\n".join(lines)


def load_summary(out) -> dict:
    """Read ``summary.json`` of an earlier run."""
    return json.loads((Path(out) / "summary.json").read_text())
