"""Turn an MI matrix (rows: next-state variables, columns: inputs) into independent blocks.

Methods of `block_diagonalize` (see docs/methods.md for when each is right):

- ``"components"`` (thesis): binarize each column at its own quantile (entries strictly above
  it), then the blocks are the connected components of the bipartite row/column graph.
- ``"threshold"``: the same with one threshold for the whole matrix (a number, or an array
  broadcast to the matrix, e.g. the permutation null's upper quantile).
- ``"auto-threshold"``: scan thresholds (per-column quantiles or global values) and keep the
  components partition with the highest weighted bipartite modularity (Barber 2007) of the
  clipped matrix: merging true blocks adds no in-block mass, splitting one loses some.
- ``"spectral"``: scikit-learn `SpectralCoclustering` on the matrix clipped at 0; the number
  of blocks given, or chosen by the largest gap in the singular values of the normalised
  bipartite matrix.
- ``"profiles"``: for a non-negative *effect* matrix (how much each input moves each variable,
  e.g. sensitivities measured by simulation): average-linkage clustering of the inputs' log
  effect profiles by correlation (`profile_clusters`), each row joining the block whose inputs
  move it most on average; the number of blocks given, or the smallest one that independent
  halves of the data reproduce (`reproducible_n_clusters`). Unlike the
  co-clustering methods it needs no block structure in the matrix itself: inputs whose effects
  are local but overlap end in one block when their profiles look alike.

Every row and every column ends in exactly one block; a block may have no rows or no columns
(an input that influences nothing above the threshold, or a variable nothing influences).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "Factorization",
    "METHODS",
    "bipartite_modularity",
    "block_diagonalize",
    "effect_profiles",
    "labels_from_groups",
    "profile_clusters",
    "reproducible_n_clusters",
]

METHODS = ("components", "threshold", "auto-threshold", "spectral", "profiles")


def _matrix(matrix) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"matrix must be 2-D and non-empty, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("matrix contains NaN or infinite values")
    return m


def _check_quantile(q) -> float:
    q = float(q)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {q}")
    return q


def labels_from_groups(groups, n: int) -> np.ndarray:
    """Label array (n,) from a list of index lists; ValueError unless it is a partition."""
    labels = np.full(n, -1, dtype=np.int64)
    for g, idx in enumerate(groups):
        for i in idx:
            if not 0 <= int(i) < n:
                raise ValueError(f"index {i} out of range for {n} items")
            if labels[int(i)] != -1:
                raise ValueError(f"index {i} appears in more than one group")
            labels[int(i)] = g
    if np.any(labels < 0):
        raise ValueError(f"indices {np.flatnonzero(labels < 0).tolist()} are in no group")
    return labels


def _as_labels(ref, n: int) -> np.ndarray:
    ref = list(ref)
    if ref and isinstance(ref[0], (list, tuple, np.ndarray)):
        return labels_from_groups(ref, n)
    labels = np.asarray(ref, dtype=np.int64)
    if labels.shape != (n,):
        raise ValueError(f"reference labels must have length {n}, got {labels.shape}")
    return labels


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


@dataclass
class Factorization:
    """Blocks of a matrix: ``row_groups[b]`` and ``col_groups[b]`` are the rows and columns of
    block b (sorted index lists). ``row_order``/``col_order`` list rows/columns block by block
    (for plotting); ``binary`` is the binarized matrix the blocks came from, if any."""

    row_groups: list[list[int]]
    col_groups: list[list[int]]
    method: str = "components"
    params: dict = field(default_factory=dict)
    binary: np.ndarray | None = None
    row_order: list[int] = field(default_factory=list)
    col_order: list[int] = field(default_factory=list)

    def __post_init__(self):
        if len(self.row_groups) != len(self.col_groups):
            raise ValueError("row_groups and col_groups must have one entry per block")
        self.row_groups = [sorted(int(i) for i in g) for g in self.row_groups]
        self.col_groups = [sorted(int(i) for i in g) for g in self.col_groups]
        if not self.row_order:
            self.row_order = [i for g in self.row_groups for i in g]
        if not self.col_order:
            self.col_order = [j for g in self.col_groups for j in g]

    @property
    def n_blocks(self) -> int:
        return len(self.row_groups)

    @property
    def n_rows(self) -> int:
        return sum(len(g) for g in self.row_groups)

    @property
    def n_cols(self) -> int:
        return sum(len(g) for g in self.col_groups)

    def row_labels(self) -> np.ndarray:
        return labels_from_groups(self.row_groups, self.n_rows)

    def col_labels(self) -> np.ndarray:
        return labels_from_groups(self.col_groups, self.n_cols)

    def to_json(self, env=None, row_key: str = "lines", col_key: str = "substations") -> str:
        """``factorization.json`` (format 1 of ARCHITECTURE.md); rows are ``row_key``."""
        params = {k: v for k, v in self.params.items() if not isinstance(v, np.ndarray)}
        data = {
            "format": 1,
            "env": env,
            "method": self.method,
            "params": params,
            "clusters": [
                {col_key: c, row_key: r} for r, c in zip(self.row_groups, self.col_groups)
            ],
        }
        return json.dumps(data, default=_json_default) + "\n"

    @classmethod
    def from_json(
        cls, text: str, row_key: str = "lines", col_key: str = "substations"
    ) -> Factorization:
        """Inverse of `to_json`; ValueError on a malformed document."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"malformed factorization JSON ({exc.msg} at line {exc.lineno})"
            ) from exc
        if (
            not isinstance(data, dict)
            or data.get("format") != 1
            or not isinstance(data.get("clusters"), list)
        ):
            raise ValueError("not a factorization document of format 1")
        rows, cols = [], []
        for i, c in enumerate(data["clusters"]):
            if (
                not isinstance(c, dict)
                or not isinstance(c.get(row_key), list)
                or not isinstance(c.get(col_key), list)
            ):
                raise ValueError(f"cluster {i} must have lists {row_key!r} and {col_key!r}")
            rows.append(c[row_key])
            cols.append(c[col_key])
        fac = cls(
            rows,
            cols,
            method=data.get("method") or "unknown",
            params=dict(data.get("params") or {}),
        )
        for groups in (fac.row_groups, fac.col_groups):  # a partition of 0..n-1
            labels_from_groups(groups, 1 + max((i for g in groups for i in g), default=-1))
        return fac

    def score(self, reference_rows, reference_cols) -> dict:
        """Agreement with a reference partition (index lists per block, or label arrays):
        adjusted Rand index of rows and of columns, and scikit-learn `consensus_score` of the
        (row, column) blocks (1.0 = identical)."""
        from sklearn.metrics import adjusted_rand_score, consensus_score

        ref_r = _as_labels(reference_rows, self.n_rows)
        ref_c = _as_labels(reference_cols, self.n_cols)
        ours_r, ours_c = self.row_labels(), self.col_labels()

        def biclusters(lr, lc):
            ids = np.union1d(lr, lc)
            return (lr[None, :] == ids[:, None], lc[None, :] == ids[:, None])

        return {
            "ari_rows": float(adjusted_rand_score(ref_r, ours_r)),
            "ari_cols": float(adjusted_rand_score(ref_c, ours_c)),
            "consensus": float(
                consensus_score(biclusters(ours_r, ours_c), biclusters(ref_r, ref_c))
            ),
        }


# --------------------------------------------------------------------------- building blocks


def binarize_columns(matrix, quantile: float) -> np.ndarray:
    """1 where an entry is strictly above its column's ``quantile`` (thesis binarization)."""
    m = _matrix(matrix)
    q = _check_quantile(quantile)
    return m > np.quantile(m, q, axis=0, keepdims=True)


def _components(binary: np.ndarray):
    """Row and column groups of the connected components of the bipartite graph."""
    n_r, n_c = binary.shape
    b = csr_matrix(binary.astype(np.int8))
    adj = csr_matrix((n_r + n_c, n_r + n_c), dtype=np.int8).tolil()
    adj[:n_r, n_r:] = b
    _, labels = connected_components(adj.tocsr(), directed=False)
    return _groups_from_labels(labels[:n_r], labels[n_r:])


def _groups_from_labels(row_labels: np.ndarray, col_labels: np.ndarray):
    """Index lists per block, blocks ordered: with rows and columns first, then by size, then by
    smallest index (a deterministic layout for figures)."""
    ids = np.union1d(row_labels, col_labels)
    blocks = []
    for b in ids:
        r = np.flatnonzero(row_labels == b).tolist()
        c = np.flatnonzero(col_labels == b).tolist()
        blocks.append((r, c))
    blocks.sort(
        key=lambda rc: (not (rc[0] and rc[1]), -(len(rc[0]) + len(rc[1])), min(rc[0] + rc[1]))
    )
    return [r for r, _ in blocks], [c for _, c in blocks]


def bipartite_modularity(matrix, row_labels, col_labels) -> float:
    """Weighted bipartite modularity (Barber 2007) of a partition on ``max(matrix, 0)``."""
    a = np.clip(_matrix(matrix), 0, None)
    total = a.sum()
    if total <= 0:
        return 0.0
    same = np.asarray(row_labels)[:, None] == np.asarray(col_labels)[None, :]
    expected = np.outer(a.sum(axis=1), a.sum(axis=0)) / total
    return float(((a - expected) * same).sum() / total)


def _labels(row_groups, col_groups, n_r, n_c):
    lr = np.empty(n_r, np.int64)
    lc = np.empty(n_c, np.int64)
    for b, (r, c) in enumerate(zip(row_groups, col_groups)):
        lr[r] = b
        lc[c] = b
    return lr, lc


def eigengap_n_clusters(matrix, max_clusters: int | None = None) -> int:
    """Number of blocks from the largest gap among the leading singular values of the
    normalised bipartite matrix D_r^-1/2 A D_c^-1/2 (A = matrix clipped at 0); a perfectly
    block-diagonal A has exactly one singular value 1 per block."""
    a = np.clip(_matrix(matrix), 0, None) + 1e-12
    an = a / np.sqrt(a.sum(axis=1))[:, None] / np.sqrt(a.sum(axis=0))[None, :]
    s = np.linalg.svd(an, compute_uv=False)
    top = min(len(s), max_clusters or len(s))
    if top < 2:
        return 1
    gaps = s[: top - 1] - s[1:top]
    return int(np.argmax(gaps)) + 1


# --------------------------------------------------------------------------- entry point


def block_diagonalize(
    matrix,
    quantile: float = 0.7,
    method: str = "components",
    n_clusters: int | None = None,
    threshold=None,
    scan: str = "quantile",
    grid=None,
    random_state: int = 0,
    halves=None,
) -> Factorization:
    """Blocks of ``matrix`` (n_rows, n_cols) by ``method`` (see the module docstring).

    quantile: per-column quantile for ``"components"``. threshold: number or array for
    ``"threshold"``. scan / grid: for ``"auto-threshold"``, ``"quantile"`` scans per-column
    quantiles (default grid 0.50, 0.51, ..., 0.99), ``"global"`` scans the distinct values of
    the matrix (or ``grid``). n_clusters / random_state: for ``"spectral"`` (None = eigengap);
    n_clusters / halves for ``"profiles"`` (None: the smallest number the split halves of the
    data reproduce, `reproducible_n_clusters`, or without halves the largest gap between
    merge heights).
    """
    m = _matrix(matrix)
    n_r, n_c = m.shape
    if method == "components":
        q = _check_quantile(quantile)
        binary = binarize_columns(m, q)
        rows, cols = _components(binary)
        return Factorization(rows, cols, "components", {"quantile": q}, binary)
    if method == "threshold":
        if threshold is None:
            raise ValueError("method 'threshold' needs threshold= (a number or an array)")
        thr = np.broadcast_to(np.asarray(threshold, dtype=np.float64), m.shape)
        binary = m > thr
        rows, cols = _components(binary)
        params = {"threshold": float(thr.flat[0]) if np.ndim(threshold) == 0 else "array"}
        return Factorization(rows, cols, "threshold", params, binary)
    if method == "auto-threshold":
        if scan == "quantile":
            values = (
                np.round(np.arange(0.5, 0.995, 0.01), 2)
                if grid is None
                else np.asarray(grid, float)
            )
            for v in values:
                _check_quantile(v)
            binaries = [binarize_columns(m, v) for v in values]
        elif scan == "global":
            values = np.unique(m)[:-1] if grid is None else np.asarray(grid, float)
            binaries = [m > v for v in values]
        else:
            raise ValueError(f"scan must be 'quantile' or 'global', got {scan!r}")
        best = None
        scores = []
        for v, b in zip(values, binaries):
            rows, cols = _components(b)
            score = bipartite_modularity(m, *_labels(rows, cols, n_r, n_c))
            scores.append(score)
            if best is None or score > best[0] + 1e-12:
                best = (score, float(v), rows, cols, b)
        score, v, rows, cols, b = best
        params = {"scan": scan, "threshold": v, "modularity": score}
        if scan == "quantile":
            params["quantile"] = v
        return Factorization(rows, cols, "auto-threshold", params, b)
    if method == "spectral":
        from sklearn.cluster import SpectralCoclustering

        n = eigengap_n_clusters(m) if n_clusters is None else int(n_clusters)
        if not 1 <= n <= min(n_r, n_c):
            raise ValueError(f"n_clusters must be in [1, {min(n_r, n_c)}], got {n}")
        a = np.clip(m, 0, None) + 1e-12 * max(1.0, float(np.abs(m).max()))
        if n == 1:
            lr, lc = np.zeros(n_r, np.int64), np.zeros(n_c, np.int64)
        else:
            model = SpectralCoclustering(n_clusters=n, random_state=random_state).fit(a)
            lr, lc = model.row_labels_, model.column_labels_
        rows, cols = _groups_from_labels(lr, lc)
        params = {
            "n_clusters": n,
            "n_clusters_auto": n_clusters is None,
            "random_state": random_state,
        }
        return Factorization(rows, cols, "spectral", params, None)
    if method == "profiles":
        return profile_clusters(m, n_clusters=n_clusters, halves=halves)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


# --------------------------------------------------------------------------- effect profiles

#: Entries of the effect matrix below this quantile are the "far field": the log profile
#: is floored there, so a column's shape is set by the variables it visibly moves. (On the
#: 118-bus grid, 0.9 gave the same 3-cluster partition on 3 seeds of data, 0.7-0.8 did not:
#: docs/methods.md.)
PROFILE_FLOOR_QUANTILE = 0.9

#: Automatic number of clusters from split halves of the data: the smallest k whose partitions
#: of the two halves agree with at least this mean adjusted Rand index.
REPRODUCIBLE_ARI = 0.8


def effect_profiles(effects, floor_quantile: float = PROFILE_FLOOR_QUANTILE) -> np.ndarray:
    """Log effect profiles (n_cols, n_rows) of a non-negative effect matrix (n_rows, n_cols).

    ``effects[i, j]``: size of the change of variable i when input j acts (e.g. the root mean
    square of next - do-nothing next of a line loading under random actions of a substation).
    Profile j is ``log(effects[:, j] + floor)`` minus its mean over rows; ``floor`` is the
    ``floor_quantile`` of all entries, so the profile measures how far (in orders of magnitude)
    each variable lies from input j, and ignores what is lost in the far field.
    """
    m = _matrix(effects)
    if np.any(m < 0):
        raise ValueError("effects must be non-negative (sizes of changes)")
    f = np.log(m + _profile_floor(m, floor_quantile)).T
    return f - f.mean(axis=1, keepdims=True)


def _profile_floor(m: np.ndarray, floor_quantile: float) -> float:
    floor = float(np.quantile(m, _check_quantile(floor_quantile)))
    if floor <= 0:
        floor = float(m[m > 0].min()) if np.any(m > 0) else 1.0
    return floor


def merge_gap_n_clusters(heights, max_clusters: int) -> int:
    """Number of clusters at the largest gap between consecutive merge heights of a
    hierarchical clustering, from 2 to ``max_clusters`` (``heights``: scipy linkage column 2)."""
    h = np.sort(np.asarray(heights, float))[::-1]  # h[0]: the merge 2 -> 1
    top = min(max_clusters, len(h) + 1)
    if top < 2:
        return 1
    gaps = [h[k - 2] - (h[k - 1] if k - 1 < len(h) else 0.0) for k in range(2, top + 1)]
    return int(np.argmax(gaps)) + 2


def _profile_labels(prof: np.ndarray, n: int):
    """Column labels (renumbered by first column) of average linkage on correlation distance
    cut at ``n`` clusters, and the merge heights."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    if prof.shape[0] < 2:
        return np.zeros(prof.shape[0], np.int64), np.zeros(0)
    # average linkage (UPGMA) on correlation distance: 1 - Pearson r of two profiles; a flat
    # profile (an input without visible effect in this data) correlates with nothing: 1
    d = pdist(prof, metric="correlation")
    z = linkage(np.where(np.isfinite(d), d, 1.0), method="average")
    lc = np.zeros(prof.shape[0], np.int64) if n == 1 else fcluster(z, n, criterion="maxclust") - 1
    # fcluster numbers clusters arbitrarily: renumber by smallest column (a stable layout)
    order = {c: i for i, c in enumerate(dict.fromkeys(lc.tolist()))}
    return np.array([order[c] for c in lc], np.int64), z[:, 2]


def reproducible_n_clusters(
    halves,
    max_clusters: int = 8,
    floor_quantile: float = PROFILE_FLOOR_QUANTILE,
    threshold: float = REPRODUCIBLE_ARI,
) -> tuple[int, dict]:
    """The smallest number of clusters, from 2 to ``max_clusters``, at which `profile_clusters`
    gives the same partition of the inputs on two independent halves of the data: mean
    adjusted Rand index over the splits >= ``threshold``. ``halves``: a list of (effects of
    half A, effects of half B), each (n_rows, n_cols), e.g. the data's episodes split at random
    a few times. 1 when no k is reproducible (no structure to split on). Returns (k, the mean
    ARI per k)."""
    from sklearn.metrics import adjusted_rand_score

    halves = [(_matrix(a), _matrix(b)) for a, b in halves]
    if not halves:
        raise ValueError("reproducible_n_clusters needs at least one pair of halves")
    n_c = halves[0][0].shape[1]
    profs = [(effect_profiles(a, floor_quantile), effect_profiles(b, floor_quantile))
             for a, b in halves]  # fmt: skip
    scores = {}
    for k in range(2, min(max_clusters, n_c) + 1):
        aris = [
            adjusted_rand_score(_profile_labels(pa, k)[0], _profile_labels(pb, k)[0])
            for pa, pb in profs
        ]
        scores[k] = round(float(np.mean(aris)), 4)
        if scores[k] >= threshold:
            return k, scores
    return 1, scores


def profile_clusters(
    effects,
    n_clusters: int | None = None,
    floor_quantile: float = PROFILE_FLOOR_QUANTILE,
    max_clusters: int = 8,
    halves=None,
) -> Factorization:
    """Blocks of an effect matrix (rows: variables, columns: inputs) by the shape of each
    input's effect profile (`effect_profiles`): average-linkage clustering of the columns with
    1 - Pearson correlation of their profiles as distance, then each row joins the block whose
    inputs move it most on average (the highest mean of its floored log effects over the
    block's columns: one noisy input does not carry a row away). The number of blocks: given;
    else, with ``halves`` (pairs of effect matrices of independent halves of the data), the
    smallest one the halves reproduce (`reproducible_n_clusters`); else the largest gap between
    merge heights. Deterministic (no random start)."""
    m = _matrix(effects)
    n_r, n_c = m.shape
    prof = effect_profiles(m, floor_quantile)
    _, heights = _profile_labels(prof, 1)
    params = {}
    if n_clusters is not None:
        n = int(n_clusters)
    elif n_c < 2:
        n = 1
    elif halves is not None:
        n, scores = reproducible_n_clusters(halves, max_clusters, floor_quantile)
        params["split_half_ari"] = {str(k): v for k, v in scores.items()}
    else:
        n = merge_gap_n_clusters(heights, max_clusters)
    if not 1 <= n <= n_c:
        raise ValueError(f"n_clusters must be in [1, {n_c}], got {n}")
    lc, _ = _profile_labels(prof, n)
    n = int(lc.max()) + 1
    # rows: the block with the highest mean floored log effect (profiles are centred per
    # column, so use the uncentred log values)
    floor = _profile_floor(m, floor_quantile)
    logm = np.log(m + floor)
    score = np.stack([logm[:, lc == b].mean(axis=1) for b in range(n)], axis=1)
    lr = np.argmax(score, axis=1).astype(np.int64)
    rows = [np.flatnonzero(lr == b).tolist() for b in range(n)]
    cols = [np.flatnonzero(lc == b).tolist() for b in range(n)]
    params = {
        "n_clusters": n,
        "n_clusters_auto": n_clusters is None,
        "n_clusters_rule": None
        if n_clusters is not None
        else ("split halves" if halves is not None else "merge gap"),
        "floor_quantile": float(floor_quantile),
        **params,
        "merge_heights": [round(float(h), 4) for h in np.sort(heights)[::-1][:10]],
    }
    return Factorization(rows, cols, "profiles", params, None)
