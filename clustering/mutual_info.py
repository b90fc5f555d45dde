"""Mixed-KSG mutual information (Gao, Kannan, Oh & Viswanath, NeurIPS 2017), fast and exact.

The estimator, as the thesis evaluates it, for N samples of (x, y):

- rho_i: max-norm distance from point i to its k-th neighbour in the joint space, the point
  itself counted among the k + 1 nearest;
- rho_i = 0: k_i, n_x, n_y are the numbers of exact ties of point i (self included) in the
  joint space, in x and in y;
- rho_i > 0: k_i = k, and n_x, n_y count the points within max-norm distance
  rho_i - 1e-20 in x and in y (self included);
- estimate = mean_i [psi(k_i) + log N - psi(n_x) - psi(n_y)], in nats.

`_mixed_ksg_reference` is that definition written point by point with `scipy.spatial.cKDTree`
(slow; kept for tests and benchmarks). `mixed_ksg` computes the same numbers without a Python
loop: for 1-D x and y a numba kernel brackets rho_i between two squares by counting the
points in a square (binary searches for the rank ranges, then a wavelet matrix over the
y-ranks in x order, O(log N) per count), narrows the bracket with count ~ r**2 steps, and
reads rho_i exactly among the few points between the two squares. Points are visited along a
Z-order curve so that the previous rho_i is a close first guess. When y has few distinct
values the k + 1 nearest points usually share the point's y value, so rho_i is a 1-D
sliding-window distance (accepted when below the gap to the next y value, else the general
search runs).
All distances are compared exactly as the KD-tree compares them (|a - b| in float64), so the
result equals the reference up to summation order. Multi-dimensional x or y use vectorised
KD-tree queries.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit
from scipy.spatial import cKDTree
from scipy.special import digamma
from sklearn.base import BaseEstimator

#: ``mapper(fn, items)``: results of ``fn`` over ``items`` in order (``map``-like; threads,
#: processes or a cluster: the caller chooses; ``fn`` pickles)
Mapper = Callable[[Callable, Iterable], Iterable]

#: Offset below rho_i for the marginal counts (as in the thesis' evaluation of Mixed-KSG);
#: the radius is clamped at 0, so a point always counts itself even when rho_i < OFFSET
#: (near-constant variables, spacing ~1e-21), which would otherwise give psi(0) = -inf.
OFFSET = 1e-20
#: y columns with at most this many distinct values use the same-value shortcut.
MAX_CLASSES = 512
#: A 1-D column is *discrete* (labels: its encoding carries no information) when it has at
#: most MAX_CLASSES distinct values and each is shared by this many points on average. Its
#: values are replaced by rank / number of distinct values (0, 1/m, 2/m, ...: the thesis
#: encoding of actions, which the power-grid pipeline already uses, so its estimates are
#: unchanged) before the estimate: integer ids, the same ids scaled or shifted give the same
#: MI at the same speed.
DISCRETE_MIN_COUNT = 32

__all__ = [
    "MutualInformation",
    "NullResult",
    "mi_matrix",
    "mixed_ksg",
    "permutation_null",
    "resolve_k",
    "unbiased_mi",
]


# --------------------------------------------------------------------------- validation


def _as_samples(a, name: str) -> np.ndarray:
    """Return ``a`` as float64 (N, d); ValueError on NaN/inf or wrong rank."""
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be 1-D or 2-D (N, d) with d >= 1, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def resolve_k(k, n: int) -> int:
    """Neighbour count for ``n`` samples: an int >= 1, or a float in (0, 1) = fraction of n.

    A fraction resolves to ``max(1, round(k * n))`` (the thesis uses k = N/20, i.e. 0.05).
    ValueError if the result is not in [1, n - 1].
    """
    if isinstance(k, bool):
        raise ValueError(f"k must be an int or a fraction in (0, 1), got {k!r}")
    if isinstance(k, (int, np.integer)):
        kk = int(k)
    elif isinstance(k, (float, np.floating)) and 0.0 < float(k) < 1.0:
        kk = max(1, int(round(float(k) * n)))
    else:
        raise ValueError(f"k must be an int >= 1 or a fraction in (0, 1), got {k!r}")
    if kk < 1:
        raise ValueError(f"k must be >= 1, got {k!r}")
    if kk >= n:
        raise ValueError(f"k must be smaller than the number of samples ({n}), got {kk}")
    return kk


# --------------------------------------------------------------------------- reference


def _mixed_ksg_reference(x, y, k: int = 5, points=None) -> float:
    """The definition, point by point with cKDTree (slow: tests and benchmarks only).

    ``points``: evaluate only these sample indices (mean over them; for timing the loop)."""
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    n = len(x)
    xy = np.hstack([x, y])
    t_xy, t_x, t_y = cKDTree(xy), cKDTree(x), cKDTree(y)
    total = 0.0
    points = range(n) if points is None else points
    for i in points:
        rho = t_xy.query(xy[i], k + 1, p=np.inf)[0][k]
        if rho == 0:
            ki = len(t_xy.query_ball_point(xy[i], 0.0, p=np.inf))
            nx = len(t_x.query_ball_point(x[i], 0.0, p=np.inf))
            ny = len(t_y.query_ball_point(y[i], 0.0, p=np.inf))
        else:
            ki = k
            nx = len(t_x.query_ball_point(x[i], max(rho - OFFSET, 0.0), p=np.inf))
            ny = len(t_y.query_ball_point(y[i], max(rho - OFFSET, 0.0), p=np.inf))
        total += digamma(ki) + math.log(n) - digamma(nx) - digamma(ny)
    return total / len(points)


# --------------------------------------------------------------------------- numba kernels


@njit(cache=True, nogil=True)
def _lo_bound(s, v, r, hi):
    """Smallest p in [0, hi] with v - s[p] <= r (s ascending, s[hi] <= v)."""
    lo = 0
    while lo < hi:
        mid = (lo + hi) >> 1
        if v - s[mid] <= r:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, nogil=True)
def _hi_bound(s, v, r, lo):
    """One past the largest p in [lo, N) with s[p] - v <= r (s ascending, s[lo] >= v)."""
    hi = s.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if s[mid] - v <= r:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _lo_bound_in(s, v, r, lo, hi):
    """Smallest p in [lo, hi] with v - s[p] <= r (it holds at hi)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if v - s[mid] <= r:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, nogil=True)
def _hi_bound_in(s, v, r, lo, hi):
    """One past the largest p in [lo, hi) with s[p] - v <= r (it holds at lo - 1)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if s[mid] - v <= r:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, nogil=True)
def _count_1d(s, v, pos, r):
    """Number of p with |s[p] - v| <= r, where s[pos] == v."""
    if r < 0:
        return 0
    return _hi_bound(s, v, r, pos) - _lo_bound(s, v, r, pos)


_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(cache=True, nogil=True, inline="always")
def _popcount(v):
    v = v - ((v >> np.uint64(1)) & _M1)
    v = (v & _M2) + ((v >> np.uint64(2)) & _M2)
    v = (v + (v >> np.uint64(4))) & _M4
    return np.int64((v * _H01) >> np.uint64(56))


@njit(cache=True, nogil=True)
def _wm_build(seq, levels):
    """Wavelet matrix of ``seq`` (ints in [0, 2**levels)) as bit vectors: ``ones[lv, w]`` holds
    the bits of level lv in 64-bit words, ``zeros_before[lv, w]`` the zeros in words < w and
    ``zeros[lv]`` the zeros of the level (compact, so that counting stays in cache)."""
    n = seq.shape[0]
    n_words = (n >> 6) + 1
    ones = np.zeros((levels, n_words), np.uint64)
    zeros_before = np.zeros((levels, n_words), np.int64)
    zeros = np.zeros(levels, np.int64)
    cur = seq.copy()
    nxt = np.empty_like(cur)
    for lv in range(levels):
        shift = levels - 1 - lv
        z = 0
        for p in range(n):
            if (p & 63) == 0:
                zeros_before[lv, p >> 6] = z
            if (cur[p] >> shift) & 1:
                ones[lv, p >> 6] |= np.uint64(1) << np.uint64(p & 63)
            else:
                z += 1
        if (n & 63) == 0:
            zeros_before[lv, n >> 6] = z
        zeros[lv] = z
        zi = 0
        oi = z
        for p in range(n):
            if (cur[p] >> shift) & 1:
                nxt[oi] = cur[p]
                oi += 1
            else:
                nxt[zi] = cur[p]
                zi += 1
        cur, nxt = nxt, cur
    return ones, zeros_before, zeros


@njit(cache=True, nogil=True, inline="always")
def _rank0(ones, zeros_before, lv, p):
    """Zeros of level lv among positions < p."""
    w = p >> 6
    r = p & 63
    below = ones[lv, w] & ((np.uint64(1) << np.uint64(r)) - np.uint64(1))
    return zeros_before[lv, w] + r - _popcount(below)


@njit(cache=True, nogil=True)
def _wm_less(wm_ones, wm_zb, zeros, levels, a, b, v):
    """How many of seq[a:b] are < v."""
    if v <= 0 or a >= b:
        return 0
    if v >= (1 << levels):
        return b - a
    res = 0
    for lv in range(levels):
        bit = (v >> (levels - 1 - lv)) & 1
        ra = _rank0(wm_ones, wm_zb, lv, a)
        rb = _rank0(wm_ones, wm_zb, lv, b)
        if bit:
            res += rb - ra
            a = zeros[lv] + a - ra
            b = zeros[lv] + b - rb
        else:
            a = ra
            b = rb
    return res


@njit(cache=True, nogil=True)
def _wm_range(wm_ones, wm_zb, zeros, levels, a, b, lo_v, hi_v):
    """How many of seq[a:b] are in [lo_v, hi_v) (both walks share the levels where the
    two bounds agree)."""
    if a >= b or hi_v <= lo_v:
        return 0
    if lo_v <= 0:
        return _wm_less(wm_ones, wm_zb, zeros, levels, a, b, hi_v)
    if hi_v >= (1 << levels):
        return b - a - _wm_less(wm_ones, wm_zb, zeros, levels, a, b, lo_v)
    lv = 0
    while lv < levels:
        sh = levels - 1 - lv
        bh = (hi_v >> sh) & 1
        bl = (lo_v >> sh) & 1
        ra = _rank0(wm_ones, wm_zb, lv, a)
        rb = _rank0(wm_ones, wm_zb, lv, b)
        if bh != bl:  # bh = 1, bl = 0: the walks split here
            res = rb - ra
            a1 = zeros[lv] + a - ra
            b1 = zeros[lv] + b - rb
            a0 = ra
            b0 = rb
            for lv2 in range(lv + 1, levels):
                sh2 = levels - 1 - lv2
                ra = _rank0(wm_ones, wm_zb, lv2, a1)
                rb = _rank0(wm_ones, wm_zb, lv2, b1)
                if (hi_v >> sh2) & 1:
                    res += rb - ra
                    a1 = zeros[lv2] + a1 - ra
                    b1 = zeros[lv2] + b1 - rb
                else:
                    a1 = ra
                    b1 = rb
                ra = _rank0(wm_ones, wm_zb, lv2, a0)
                rb = _rank0(wm_ones, wm_zb, lv2, b0)
                if (lo_v >> sh2) & 1:
                    res -= rb - ra
                    a0 = zeros[lv2] + a0 - ra
                    b0 = zeros[lv2] + b0 - rb
                else:
                    a0 = ra
                    b0 = rb
            return res
        if bh:
            a = zeros[lv] + a - ra
            b = zeros[lv] + b - rb
        else:
            a = ra
            b = rb
        lv += 1
    return 0


@njit(cache=True, nogil=True)
def _count_square(xs, ys, xi, yi, px, py, r, wm_ones, wm_zb, zeros, levels):
    """Number of points j with max(|x_j - xi|, |y_j - yi|) <= r."""
    if r < 0:
        return 0
    a = _lo_bound(xs, xi, r, px)
    b = _hi_bound(xs, xi, r, px)
    c = _lo_bound(ys, yi, r, py)
    d = _hi_bound(ys, yi, r, py)
    return _wm_range(wm_ones, wm_zb, zeros, levels, a, b, c, d)


@njit(cache=True, nogil=True)
def _resolve(xs, y_by_x, ys, x_by_y, xi, yi, lo, hi, rank, bx_lo, bx_hi, by_lo, by_hi, buf):
    """The ``rank``-th smallest (1-based) joint distance among the points at distance in
    (lo, hi]: those with |dx| in (lo, hi] and |dy| <= hi, plus those with |dy| in (lo, hi] and
    |dx| <= lo (a disjoint cover). ``bx_*``/``by_*``: (start, stop) position ranges in x and
    y order of the points within lo and within hi."""
    m = 0
    for p in range(bx_hi[0], bx_lo[0]):
        dy = abs(y_by_x[p] - yi)
        if dy <= hi:
            buf[m] = max(xi - xs[p], dy)
            m += 1
    for p in range(bx_lo[1], bx_hi[1]):
        dy = abs(y_by_x[p] - yi)
        if dy <= hi:
            buf[m] = max(xs[p] - xi, dy)
            m += 1
    for p in range(by_hi[0], by_lo[0]):
        if abs(x_by_y[p] - xi) <= lo:
            buf[m] = yi - ys[p]
            m += 1
    for p in range(by_lo[1], by_hi[1]):
        if abs(x_by_y[p] - xi) <= lo:
            buf[m] = ys[p] - yi
            m += 1
    return _select(buf, m, rank - 1)


@njit(cache=True, nogil=True)
def _select(buf, m, j):
    """The j-th smallest (0-based) of buf[:m], by in-place quickselect."""
    lo = 0
    hi = m - 1
    while lo < hi:
        pivot = buf[(lo + hi) >> 1]
        i = lo
        k = hi
        while i <= k:
            while buf[i] < pivot:
                i += 1
            while buf[k] > pivot:
                k -= 1
            if i <= k:
                t = buf[i]
                buf[i] = buf[k]
                buf[k] = t
                i += 1
                k -= 1
        if j <= k:
            hi = k
        elif j >= i:
            lo = i
        else:
            return buf[j]
    return buf[j]


@njit(cache=True, nogil=True)
def _ksg_counts_1d(x, y, k, cls, cls_gap, use_classes, max_newton=16, max_scan=48, margin=2.0):
    """Per-point (k_i, n_x, n_y) of Mixed-KSG for 1-D float64 x, y.

    ``cls``: y class index per point (rank of its distinct value), ``cls_gap``: distance from
    each class value to the nearest other one; used only when ``use_classes``.
    """
    n = x.shape[0]
    ox = np.argsort(x, kind="mergesort")
    oy = np.argsort(y, kind="mergesort")
    xs = x[ox]
    ys = y[oy]
    rank_x = np.empty(n, np.int64)
    rank_y = np.empty(n, np.int64)
    for p in range(n):
        rank_x[ox[p]] = p
        rank_y[oy[p]] = p
    levels = 1
    while (1 << levels) < n:
        levels += 1
    seq = np.empty(n, np.int64)
    for p in range(n):
        seq[p] = rank_y[ox[p]]
    wm_ones, wm_zb, zeros = _wm_build(seq, levels)
    y_by_x = y[ox]
    x_by_y = x[oy]
    buf = np.empty(n, np.float64)
    bx_lo = np.zeros(2, np.int64)
    bx_hi = np.zeros(2, np.int64)
    by_lo = np.zeros(2, np.int64)
    by_hi = np.zeros(2, np.int64)

    # points grouped by class, x ascending inside a class (for the same-value shortcut)
    n_cls = cls_gap.shape[0]
    cls_start = np.zeros(n_cls + 1, np.int64)
    pos_in_cls = np.empty(n, np.int64)
    xc = np.empty(n, np.float64)
    if use_classes:
        for i in range(n):
            cls_start[cls[i] + 1] += 1
        for c in range(n_cls):
            cls_start[c + 1] += cls_start[c]
        fill = cls_start[:-1].copy()
        for p in range(n):  # x order, so x stays sorted within each class
            i = ox[p]
            c = cls[i]
            xc[fill[c]] = x[i]
            pos_in_cls[i] = fill[c] - cls_start[c]
            fill[c] += 1

    need = k + 1
    kk = np.empty(n, np.int64)
    nx = np.empty(n, np.int64)
    ny = np.empty(n, np.int64)
    # visit points along a Z-order curve of their ranks: consecutive points are close in the
    # plane, so the previous rho is a good first guess (rho is 1-Lipschitz)
    code = np.zeros(n, np.int64)
    for i in range(n):
        rx = rank_x[i]
        ry = rank_y[i]
        c = 0
        for b in range(levels):
            c |= ((rx >> b) & 1) << (2 * b + 1)
            c |= ((ry >> b) & 1) << (2 * b)
        code[i] = c
    visit = np.argsort(code)
    guess = xs[n - 1] - xs[0] + ys[n - 1] - ys[0] + 1.0
    for p_order in range(n):
        i = visit[p_order]
        xi = x[i]
        yi = y[i]
        px = rank_x[i]
        py = rank_y[i]
        limit = np.inf
        rho = -1.0
        if use_classes:
            c = cls[i]
            base = cls_start[c]
            nc = cls_start[c + 1] - base
            if nc >= need:
                p = pos_in_cls[i]
                # the k+1 nearest in 1-D: a window [l, l+k] containing p
                lo = max(0, p - k)
                hi = min(p, nc - need)
                a, b = lo, hi + 1
                while a < b:  # first l with right reach >= left reach
                    mid = (a + b) >> 1
                    if xc[base + mid + k] - xi >= xi - xc[base + mid]:
                        b = mid
                    else:
                        a = mid + 1
                best = np.inf
                if a <= hi:
                    best = xc[base + a + k] - xi
                if a - 1 >= lo:
                    left = xi - xc[base + a - 1]
                    if left < best:
                        best = left
                if best < cls_gap[c]:
                    rho = best
                else:
                    limit = best  # still an attained distance and an upper bound
        if rho < 0:
            if _count_square(xs, ys, xi, yi, px, py, 0.0, wm_ones, wm_zb, zeros, levels) >= need:
                rho = 0.0
            else:
                # bracket rho in (lo, hi] with count(lo) < need <= count(hi), using
                # count ~ r**2 locally, until few points lie in the strips between lo and
                # hi; then rho is found exactly among the joint distances in (lo, hi]
                lo = 0.0
                bx_lo[0] = _lo_bound(xs, xi, 0.0, px)
                bx_lo[1] = _hi_bound(xs, xi, 0.0, px)
                by_lo[0] = _lo_bound(ys, yi, 0.0, py)
                by_lo[1] = _hi_bound(ys, yi, 0.0, py)
                c_lo = _wm_less(
                    wm_ones, wm_zb, zeros, levels, bx_lo[0], bx_lo[1], by_lo[1]
                ) - _wm_less(wm_ones, wm_zb, zeros, levels, bx_lo[0], bx_lo[1], by_lo[0])
                hi = limit
                if hi == np.inf:
                    hi = max(xs[n - 1] - xs[0], ys[n - 1] - ys[0])
                bx_hi[0] = _lo_bound(xs, xi, hi, px)
                bx_hi[1] = _hi_bound(xs, xi, hi, px)
                by_hi[0] = _lo_bound(ys, yi, hi, py)
                by_hi[1] = _hi_bound(ys, yi, hi, py)
                r = guess
                for _ in range(max_newton):
                    scan = (
                        bx_lo[0]
                        - bx_hi[0]
                        + bx_hi[1]
                        - bx_lo[1]
                        + by_lo[0]
                        - by_hi[0]
                        + by_hi[1]
                        - by_lo[1]
                    )
                    if scan <= max_scan:
                        break
                    if not (lo < r < hi):
                        r = 0.5 * (lo + hi)
                        if not (lo < r < hi):
                            break
                    # lo < r < hi: the new bounds lie between those of lo and hi
                    a0 = _lo_bound_in(xs, xi, r, bx_hi[0], bx_lo[0])
                    a1 = _hi_bound_in(xs, xi, r, bx_lo[1], bx_hi[1])
                    b0 = _lo_bound_in(ys, yi, r, by_hi[0], by_lo[0])
                    b1 = _hi_bound_in(ys, yi, r, by_lo[1], by_hi[1])
                    c = _wm_range(wm_ones, wm_zb, zeros, levels, a0, a1, b0, b1)
                    if c >= need:
                        hi = r
                        bx_hi[0], bx_hi[1], by_hi[0], by_hi[1] = a0, a1, b0, b1
                        target = need - margin  # next, aim just below rho
                    else:
                        lo = r
                        c_lo = c
                        bx_lo[0], bx_lo[1], by_lo[0], by_lo[1] = a0, a1, b0, b1
                        target = need + margin
                    r = r * math.sqrt(max(target, 1.0) / max(c, 1))
                rho = _resolve(
                    xs,
                    y_by_x,
                    ys,
                    x_by_y,
                    xi,
                    yi,
                    lo,
                    hi,
                    need - c_lo,
                    bx_lo,
                    bx_hi,
                    by_lo,
                    by_hi,
                    buf,
                )
        if rho > 0.0:
            guess = rho
        if rho == 0.0:
            kk[i] = _count_square(xs, ys, xi, yi, px, py, 0.0, wm_ones, wm_zb, zeros, levels)
            nx[i] = _count_1d(xs, xi, px, 0.0)
            ny[i] = _count_1d(ys, yi, py, 0.0)
        else:
            thr = max(rho - OFFSET, 0.0)
            kk[i] = k
            nx[i] = _count_1d(xs, xi, px, thr)
            ny[i] = _count_1d(ys, yi, py, thr)
    return kk, nx, ny


@njit(cache=True, nogil=True)
def _mean_terms(kk, nx, ny, psi):
    n = kk.shape[0]
    total = 0.0
    for i in range(n):
        total += psi[kk[i]] - psi[nx[i]] - psi[ny[i]]
    return total / n + math.log(n)


# --------------------------------------------------------------------------- estimator


def _discrete_ranks(y: np.ndarray) -> np.ndarray | None:
    """Rank of each value / number of distinct values (float64: 0, 1/m, ...) when the 1-D
    column is discrete by its values (`DISCRETE_MIN_COUNT`), else None."""
    values, inverse = np.unique(y, return_inverse=True)
    if len(values) > MAX_CLASSES or len(values) * DISCRETE_MIN_COUNT > len(y):
        return None
    return np.asarray(inverse, dtype=np.float64).ravel() / len(values)


def _classes(y: np.ndarray):
    """Class index per point and gap to the nearest other value, or None if too many values."""
    values, inverse = np.unique(y, return_inverse=True)
    if len(values) > MAX_CLASSES:
        return None
    gaps = np.full(len(values), np.inf)
    if len(values) > 1:
        d = values[1:] - values[:-1]
        gaps[1:] = d
        gaps[:-1] = np.minimum(gaps[:-1], d)
    return inverse.astype(np.int64), gaps


def _psi_table(n: int) -> np.ndarray:
    psi = np.empty(n + 1)
    psi[0] = -np.inf
    psi[1:] = digamma(np.arange(1, n + 1, dtype=np.float64))
    return psi


def _counts_1d(x: np.ndarray, y: np.ndarray, k: int):
    # discrete columns by their values, whatever their encoding: labels become rank / m
    rx, ry = _discrete_ranks(x), _discrete_ranks(y)
    x = x if rx is None else rx
    y = y if ry is None else ry
    cx, cy = _classes(x), _classes(y)
    if cy is None and cx is not None:  # the estimator is symmetric: put the discrete one in y
        x, y, cy = y, x, cx
    if cy is None:
        cls, gaps, use = np.zeros(len(y), np.int64), np.full(1, np.inf), False
    else:
        (cls, gaps), use = cy, True
    return _ksg_counts_1d(x, y, k, cls, gaps, use)


def _counts_kdtree(x: np.ndarray, y: np.ndarray, k: int):
    """Vectorised KD-tree version of the same counts (for multi-dimensional x or y)."""
    xy = np.hstack([x, y])
    rho = cKDTree(xy).query(xy, k=[k + 1], p=np.inf)[0][:, 0]
    tie = rho == 0
    r = np.where(tie, 0.0, np.maximum(rho - OFFSET, 0.0))
    kk = np.where(tie, cKDTree(xy).query_ball_point(xy, 0.0, p=np.inf, return_length=True), k)
    nx = cKDTree(x).query_ball_point(x, r, p=np.inf, return_length=True)
    ny = cKDTree(y).query_ball_point(y, r, p=np.inf, return_length=True)
    return kk.astype(np.int64), nx.astype(np.int64), ny.astype(np.int64)


def mixed_ksg(x, y, k=5) -> float:
    """Mixed-KSG mutual information I(x; y) in nats.

    x, y: 1-D (N,) or 2-D (N, d) arrays with the same N; discrete values (ties) allowed. A 1-D
    column with few distinct values (at most `MAX_CLASSES`, each shared by
    `DISCRETE_MIN_COUNT` points on average) is a discrete variable: its values are labels,
    replaced by rank / number of values, so any encoding of it (integer ids, the same ids
    scaled or shifted) gives the same estimate.
    k: neighbours (int, or a fraction of N in (0, 1), see `resolve_k`).
    Raises ValueError on NaN/inf, mismatched lengths or k >= N.
    """
    x = _as_samples(x, "x")
    y = _as_samples(y, "y")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")
    n = len(x)
    kk = resolve_k(k, n)
    return _mixed_ksg_checked(x, y, kk)


def _mixed_ksg_checked(x: np.ndarray, y: np.ndarray, k: int, psi=None) -> float:
    n = len(x)
    if x.shape[1] == 1 and y.shape[1] == 1:
        counts = _counts_1d(np.ascontiguousarray(x[:, 0]), np.ascontiguousarray(y[:, 0]), k)
    else:
        counts = _counts_kdtree(x, y, k)
    if psi is None or len(psi) <= n:
        psi = _psi_table(n)
    return float(_mean_terms(*counts, psi))


# --------------------------------------------------------------------------- matrices


def _n_workers(n_jobs: int | None) -> int:
    if n_jobs is None or n_jobs == 0:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    return int(n_jobs)


def _is_discrete(col: np.ndarray, max_levels: int = 32) -> bool:
    """Few distinct integer values: treated as discrete by the scikit-learn backend."""
    return bool(np.all(col == np.round(col))) and len(np.unique(col)) <= max_levels


def _pair_sklearn(x: np.ndarray, y: np.ndarray, k: int, seed: int) -> float:
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    disc = _is_discrete(y)
    if _is_discrete(x):
        return float(
            mutual_info_classif(
                y[:, None], x, discrete_features=[disc], n_neighbors=k, random_state=seed
            )[0]
        )
    return float(
        mutual_info_regression(
            y[:, None], x, discrete_features=[disc], n_neighbors=k, random_state=seed
        )[0]
    )


def _prepare(targets, inputs, masks):
    t = _as_samples(targets, "targets")
    u = _as_samples(inputs, "inputs")
    if len(t) != len(u):
        raise ValueError(
            f"targets and inputs must have the same number of rows, got {len(t)} and {len(u)}"
        )
    if masks is not None:
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim == 1:
            masks = masks[:, None]
        if masks.shape != u.shape:
            raise ValueError(f"masks must have the shape of inputs {u.shape}, got {masks.shape}")
    return t, u, masks


@dataclass(frozen=True, eq=False)
class _PairMI:
    """MI of one (target, input) column pair: a picklable function for any ``mapper``."""

    t: np.ndarray
    u: np.ndarray
    rows: list
    ks: list
    psi: np.ndarray
    backend: str
    seed: int

    def __call__(self, pair) -> float:
        i, j = pair
        x, y = self.t[:, i], self.u[:, j]
        if self.rows[j] is not None:
            x, y = x[self.rows[j]], y[self.rows[j]]
        if self.backend == "sklearn":
            return _pair_sklearn(x, y, self.ks[j], self.seed)
        return _mixed_ksg_checked(x[:, None], y[:, None], self.ks[j], self.psi)


def _run_pairs(t, u, masks, k, n_jobs, progress, backend, seed, desc, mapper=None):
    """MI for every (target, input) column pair: with ``mapper`` if given, else in ``n_jobs``
    threads (the kernels release the GIL)."""
    if backend not in ("ksg", "sklearn"):
        raise ValueError(f"backend must be 'ksg' or 'sklearn', got {backend!r}")
    n = len(t)
    rows = [None if masks is None else np.flatnonzero(masks[:, j]) for j in range(u.shape[1])]
    ks = [resolve_k(k, n if r is None else len(r)) for r in rows]
    one = _PairMI(t, u, rows, ks, _psi_table(n), backend, int(seed))

    pairs = [(i, j) for j in range(u.shape[1]) for i in range(t.shape[1])]
    out = np.empty((t.shape[1], u.shape[1]))
    workers = _n_workers(n_jobs)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pairs), desc=desc, unit="pair")
    try:
        if mapper is not None:
            results = mapper(one, pairs)
        elif workers == 1:
            results = map(one, pairs)
        else:
            pool = ThreadPoolExecutor(max_workers=workers)
            results = pool.map(one, pairs)
        try:
            for (i, j), v in zip(pairs, results, strict=True):
                out[i, j] = v
                if bar is not None:
                    bar.update(1)
        finally:
            if mapper is None and workers > 1:
                pool.shutdown(cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return out


def mi_matrix(
    targets,
    inputs,
    k=5,
    n_jobs=1,
    progress=False,
    backend="ksg",
    masks=None,
    random_state=0,
    mapper: Mapper | None = None,
) -> np.ndarray:
    """MI between every target column and every input column: array (n_targets, n_inputs), nats.

    targets (N, n_targets), inputs (N, n_inputs); 1-D arrays count as one column.
    k: int, or a fraction of N in (0, 1) (resolved per pair on its own row count).
    n_jobs: threads over pairs (-1 = all cores). progress: tqdm bar.
    backend: "ksg" (Mixed-KSG, exact) or "sklearn" (`mutual_info_regression` /
    `mutual_info_classif`, which add noise and clip at 0; seeded by ``random_state``).
    masks: optional bool (N, n_inputs); pair (t, j) then uses only the rows where
    ``masks[:, j]`` is true (e.g. the transitions where input j was observed).
    mapper: ``mapper(fn, pairs)`` -> results in order, ``map``-like (e.g. a process pool's or
    an executor's ``map``; ``fn`` pickles); replaces the ``n_jobs`` threads. The result does
    not depend on it.
    """
    t, u, masks = _prepare(targets, inputs, masks)
    return _run_pairs(
        t, u, masks, k, n_jobs, progress, backend, random_state, "mutual information", mapper
    )


# --------------------------------------------------------------------------- permutation null


@dataclass(frozen=True)
class NullResult:
    """MI of row-shuffled inputs: ``samples`` (n_perm, n_t, n_i), their mean and upper quantile."""

    samples: np.ndarray
    mean: np.ndarray
    upper: np.ndarray
    quantile: float
    seed: int


def _shuffle_inputs(u: np.ndarray, masks, perm: np.ndarray) -> np.ndarray:
    """Rows of ``u`` permuted by ``perm``; a masked column is permuted within its valid rows."""
    out = u[perm]
    if masks is not None:
        for j in range(u.shape[1]):
            rows = np.flatnonzero(masks[:, j])
            if len(rows) < len(u):
                out[rows, j] = u[rows[np.argsort(perm[rows], kind="stable")], j]
    return out


def permutation_null(
    targets,
    inputs,
    k=5,
    n_permutations=5,
    seed=0,
    n_jobs=1,
    quantile=0.95,
    progress=False,
    backend="ksg",
    masks=None,
    mapper: Mapper | None = None,
) -> NullResult:
    """MI after shuffling the rows of ``inputs`` (breaking any dependence), ``n_permutations``
    times with ``numpy.random.default_rng(seed)``. ``n_permutations=1`` is the thesis' single
    shuffle. Returns a `NullResult`; ``upper`` is the ``quantile`` of the samples.
    ``mapper``: as in `mi_matrix`."""
    if int(n_permutations) < 1:
        raise ValueError(f"n_permutations must be >= 1, got {n_permutations}")
    if not 0.0 <= float(quantile) <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    t, u, masks = _prepare(targets, inputs, masks)
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(len(u)) for _ in range(int(n_permutations))]
    samples = np.stack(
        [
            _run_pairs(
                t,
                _shuffle_inputs(u, masks, p),
                masks,
                k,
                n_jobs,
                progress,
                backend,
                seed,
                f"null {i + 1}",
                mapper,
            )
            for i, p in enumerate(perms)
        ]
    )
    return NullResult(
        samples=samples,
        mean=samples.mean(axis=0),
        upper=np.quantile(samples, float(quantile), axis=0),
        quantile=float(quantile),
        seed=int(seed),
    )


def unbiased_mi(mi, null: NullResult) -> np.ndarray:
    """MI minus the mean of the permutation null (the thesis' bias correction)."""
    return np.asarray(mi) - null.mean


class MutualInformation(BaseEstimator):
    """scikit-learn estimator: ``fit(targets, inputs)`` computes MI and its null.

    Parameters as in `mi_matrix` / `permutation_null` (``mapper``: a ``map``-like callable
    that replaces the ``n_jobs`` threads). ``get_params``, ``set_params`` and
    ``sklearn.base.clone`` work as for any scikit-learn estimator.
    Fitted attributes: ``mi_``, ``null_mean_``, ``null_upper_``, ``null_samples_``,
    ``unbiased_`` (all (n_targets, n_inputs), nats) and ``k_`` (resolved on all rows).
    """

    def __init__(
        self,
        k=5,
        n_permutations=5,
        seed=0,
        n_jobs=1,
        backend="ksg",
        quantile=0.95,
        progress=False,
        mapper=None,
    ):
        self.k = k
        self.n_permutations = n_permutations
        self.seed = seed
        self.n_jobs = n_jobs
        self.backend = backend
        self.quantile = quantile
        self.progress = progress
        self.mapper = mapper

    def fit(self, targets, inputs, masks=None):
        self.mi_ = mi_matrix(
            targets,
            inputs,
            k=self.k,
            n_jobs=self.n_jobs,
            progress=self.progress,
            backend=self.backend,
            masks=masks,
            random_state=self.seed,
            mapper=self.mapper,
        )
        null = permutation_null(
            targets,
            inputs,
            k=self.k,
            n_permutations=self.n_permutations,
            seed=self.seed,
            n_jobs=self.n_jobs,
            quantile=self.quantile,
            progress=self.progress,
            backend=self.backend,
            masks=masks,
            mapper=self.mapper,
        )
        self.k_ = resolve_k(self.k, len(np.asarray(targets)))
        self.null_mean_ = null.mean
        self.null_upper_ = null.upper
        self.null_samples_ = null.samples
        self.unbiased_ = unbiased_mi(self.mi_, null)
        return self
