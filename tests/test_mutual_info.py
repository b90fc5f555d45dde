"""Mixed-KSG: exact agreement with the per-point definition, analytic values, MI matrices, null."""

from __future__ import annotations

import numpy as np
import pytest

from clustering import mutual_info
from clustering.mutual_info import (
    MutualInformation,
    _mixed_ksg_reference,
    mi_matrix,
    mixed_ksg,
    permutation_null,
    resolve_k,
    unbiased_mi,
)


def _continuous(rng, n):
    x = rng.normal(size=n)
    return x, 0.7 * x + rng.normal(size=n)


def _ties(rng, n):
    """A discrete action column against a target that is exactly 0 on 'disconnected' rows."""
    a = rng.integers(0, 4, n).astype(float)
    t = np.where(rng.random(n) < 0.25, 0.0, 0.3 * a + 0.2 * rng.normal(size=n))
    return t, a


def _discrete(rng, n):
    b = rng.integers(0, 3, n)
    return b.astype(float), ((b + rng.integers(0, 2, n)) % 3).astype(float)


def _rounded(rng, n):
    """Many distinct values with ties (> the class shortcut's limit in neither variable)."""
    x = rng.normal(size=n)
    return np.round(x * 4) / 4, np.round((x + rng.normal(size=n)) * 8) / 8


def _recoded(v):
    """A 1-D column as the estimator sees it: a discrete one (few values, ties) recoded as
    rank / number of values (`mutual_info._discrete_ranks`), anything else as it is."""
    r = mutual_info._discrete_ranks(np.asarray(v, np.float64))
    return v if r is None else r


def _reference_1d(x, y, k):
    return _mixed_ksg_reference(_recoded(x), _recoded(y), k)


KINDS = {"continuous": _continuous, "ties": _ties, "discrete": _discrete, "rounded": _rounded}


@pytest.mark.parametrize("shortcut", [True, False], ids=["class-shortcut", "general-search"])
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("n, k", [(300, 1), (300, 5), (400, 20), (500, 100)])
def test_equals_per_point_reference(kind, n, k, shortcut, monkeypatch):
    if not shortcut:  # every point through the general search, ties included
        monkeypatch.setattr(mutual_info, "MAX_CLASSES", 0)
    rng = np.random.default_rng(n + k)
    x, y = KINDS[kind](rng, n)
    ref = _reference_1d(x, y, k)
    assert mixed_ksg(x, y, k) == pytest.approx(ref, abs=1e-9)
    assert mixed_ksg(y, x, k) == pytest.approx(ref, abs=1e-9)


def test_equals_reference_at_thesis_k_and_larger_n():
    rng = np.random.default_rng(7)
    n = 2000
    x, y = _continuous(rng, n)
    t, a = _ties(rng, n)
    for u, v in ((x, y), (t, a), (x, a)):
        assert mixed_ksg(u, v, 0.05) == pytest.approx(_reference_1d(u, v, 100), abs=1e-9)


def test_equals_reference_multidimensional():
    rng = np.random.default_rng(3)
    x, y = _continuous(rng, 300)
    t, a = _ties(rng, 300)
    xx = np.c_[x, a]
    assert mixed_ksg(xx, y, 7) == pytest.approx(_mixed_ksg_reference(xx, y, 7), abs=1e-9)
    assert mixed_ksg(t, np.c_[a, y], 30) == pytest.approx(
        _mixed_ksg_reference(t, np.c_[a, y], 30), abs=1e-9
    )


def test_bivariate_gaussian_matches_closed_form():
    rng = np.random.default_rng(0)
    r = 0.8
    x = rng.normal(size=4000)
    y = r * x + np.sqrt(1 - r**2) * rng.normal(size=4000)
    assert mixed_ksg(x, y, 5) == pytest.approx(-0.5 * np.log(1 - r**2), abs=0.05)


def test_independent_variables_near_zero():
    rng = np.random.default_rng(1)
    assert abs(mixed_ksg(rng.normal(size=4000), rng.normal(size=4000), 5)) < 0.03
    # a discrete-continuous pair has a known negative bias at small k; the null removes it
    x, a = rng.normal(size=4000), rng.integers(0, 3, 4000)
    null = permutation_null(x, a, k=5, n_permutations=3, seed=0)
    assert abs(unbiased_mi(mi_matrix(x, a, k=5), null)[0, 0]) < 0.03


def test_invariant_to_monotone_transform_of_continuous_variable():
    rng = np.random.default_rng(2)
    x, y = _continuous(rng, 4000)
    base = mixed_ksg(x, y, 5)
    for g in (np.exp, lambda v: v**3 + v, lambda v: 3.0 * v - 7.0):
        assert mixed_ksg(g(x), y, 5) == pytest.approx(base, abs=0.03)


def test_dependence_is_detected_on_discrete_input():
    rng = np.random.default_rng(4)
    t, a = _ties(rng, 3000)
    assert mixed_ksg(t, a, 0.05) > 0.2


@pytest.mark.parametrize(
    "x, y, k, message",
    [
        ([0.0, np.nan, 1.0], [1.0, 2.0, 3.0], 1, "NaN"),
        ([0.0, 1.0, 2.0], [1.0, 2.0], 1, "same number of samples"),
        ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], 3, "smaller than the number of samples"),
        ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], 0, "k must be"),
        ([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], 1.5, "k must be"),
        (np.zeros((3, 1, 1)), [1.0, 2.0, 3.0], 1, "1-D or 2-D"),
    ],
)
def test_invalid_input_raises_clear_value_error(x, y, k, message):
    with pytest.raises(ValueError, match=message):
        mixed_ksg(x, y, k)


def test_resolve_k_fraction():
    assert resolve_k(0.05, 20000) == 1000
    assert resolve_k(0.001, 100) == 1
    assert resolve_k(7, 100) == 7


def _data(seed=0, n=600):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, (n, 3)).astype(float)
    s = rng.normal(size=(n, 2))
    targets = np.c_[a[:, 0] + 0.3 * rng.normal(size=n), s[:, 0] ** 2, rng.normal(size=n)]
    return targets, np.c_[a, s]


def test_mi_matrix_is_all_pairs_and_parallel_is_identical():
    targets, inputs = _data()
    m = mi_matrix(targets, inputs, k=10)
    assert m.shape == (3, 5)
    assert m[1, 3] == pytest.approx(mixed_ksg(targets[:, 1], inputs[:, 3], 10), abs=1e-12)
    np.testing.assert_array_equal(mi_matrix(targets, inputs, k=10, n_jobs=2), m)
    np.testing.assert_array_equal(mi_matrix(targets, inputs, k=10, n_jobs=-1, progress=True), m)
    assert np.argmax(m[0]) == 0 and np.argmax(m[1]) == 3


def test_mi_matrix_masks_use_each_columns_rows():
    targets, inputs = _data()
    rng = np.random.default_rng(5)
    masks = rng.random(inputs.shape) < 0.7
    m = mi_matrix(targets, inputs, k=0.05, masks=masks)
    rows = masks[:, 2]
    k = resolve_k(0.05, int(rows.sum()))
    assert m[0, 2] == pytest.approx(mixed_ksg(targets[rows, 0], inputs[rows, 2], k), abs=1e-12)


def test_permutation_null_is_seeded_and_single_shuffle_is_the_thesis_one():
    targets, inputs = _data()
    null = permutation_null(targets, inputs, k=10, n_permutations=1, seed=3)
    perm = np.random.default_rng(3).permutation(len(inputs))
    expected = mi_matrix(targets, inputs[perm], k=10)
    np.testing.assert_allclose(null.samples[0], expected, atol=1e-12)
    np.testing.assert_array_equal(null.mean, null.samples[0])
    again = permutation_null(targets, inputs, k=10, n_permutations=4, seed=3, quantile=0.5)
    assert again.samples.shape == (4, 3, 5)
    np.testing.assert_array_equal(again.samples[0], null.samples[0])
    np.testing.assert_allclose(again.upper, np.median(again.samples, axis=0))
    other = permutation_null(targets, inputs, k=10, n_permutations=1, seed=4)
    assert not np.array_equal(other.samples, null.samples)


def test_masked_null_shuffles_within_valid_rows():
    targets, inputs = _data()
    masks = np.ones(inputs.shape, dtype=bool)
    masks[:100, 1] = False
    null = permutation_null(targets, inputs, k=10, n_permutations=2, seed=0, masks=masks)
    assert null.samples.shape == (2, 3, 5) and np.all(np.isfinite(null.samples))


def test_estimator_fit_and_determinism():
    targets, inputs = _data()
    est = MutualInformation(k=0.02, n_permutations=2, seed=1)
    assert est.fit(targets, inputs) is est
    np.testing.assert_allclose(est.unbiased_, est.mi_ - est.null_mean_)
    assert est.null_samples_.shape == (2, 3, 5) and est.k_ == 12
    again = MutualInformation(k=0.02, n_permutations=2, seed=1).fit(targets, inputs)
    np.testing.assert_array_equal(again.unbiased_, est.unbiased_)


def test_sklearn_backend_is_clipped_and_close_on_gaussian():
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    y = 0.8 * x + 0.6 * rng.normal(size=2000)
    ind = rng.normal(size=2000)
    a = (x > 0).astype(float)
    m = mi_matrix(np.c_[y, a], np.c_[x, ind, a], k=5, backend="sklearn")
    assert np.all(m >= 0)
    assert m[0, 0] == pytest.approx(-0.5 * np.log(1 - 0.64), abs=0.06)
    assert m[1, 2] == pytest.approx(np.log(2), abs=0.02)  # discrete target and input
    with pytest.raises(ValueError, match="backend"):
        mi_matrix(y, x, backend="nope")


def test_mi_matrix_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same number of rows"):
        mi_matrix(np.zeros((5, 2)), np.zeros((4, 2)), k=1)
    with pytest.raises(ValueError, match="masks"):
        mi_matrix(np.zeros((5, 2)), np.zeros((5, 2)), k=1, masks=np.ones((5, 3), bool))
    with pytest.raises(ValueError, match="quantile"):
        permutation_null(np.zeros((5, 1)), np.zeros((5, 1)), k=1, quantile=1.5)


def test_near_constant_variable_gives_a_finite_estimate_equal_to_the_reference():
    """Spacing ~1e-21 (a line carrying no flow) puts rho_i below OFFSET: the radius is clamped
    at 0 so a point still counts itself (previously psi(0) = -inf made the estimate inf)."""
    from clustering.mutual_info import _counts_kdtree, _mixed_ksg_reference

    rng = np.random.default_rng(0)
    n = 3000
    y = rng.integers(0, 5, n).astype(float)
    x = rng.normal(size=n) * 3e-16
    x[rng.random(n) < 0.5] = 0.0
    x[:40] = rng.normal(size=40) * 1e-21  # neighbours closer than OFFSET
    fast = mixed_ksg(x, y, k=50)
    assert np.isfinite(fast) and np.isfinite(mixed_ksg(y, x, k=50))
    assert fast == pytest.approx(_mixed_ksg_reference(x[:, None], y[:, None], 50), abs=1e-9)
    _, nx, ny = _counts_kdtree(x[:, None], y[:, None], 50)
    assert nx.min() >= 1 and ny.min() >= 1


def test_estimator_is_a_scikit_learn_estimator():
    from sklearn.base import BaseEstimator, clone

    est = MutualInformation(k=0.02, n_permutations=2, seed=1, n_jobs=2)
    assert isinstance(est, BaseEstimator)
    params = est.get_params()
    assert params["k"] == 0.02 and params["n_permutations"] == 2 and params["mapper"] is None
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert not hasattr(twin, "mi_")
    assert twin.set_params(seed=3).seed == 3 and est.seed == 1


def test_mapper_replaces_the_threads_and_gives_the_same_matrix():
    targets, inputs = _data()
    calls = []

    def mapper(fn, items):
        items = list(items)
        calls.append(len(items))
        return [fn(item) for item in reversed(items)][::-1]

    ref = mi_matrix(targets, inputs, k=5, n_jobs=2)
    np.testing.assert_array_equal(mi_matrix(targets, inputs, k=5, mapper=mapper), ref)
    assert calls == [targets.shape[1] * inputs.shape[1]]
    est = MutualInformation(k=5, n_permutations=2, seed=1, mapper=mapper).fit(targets, inputs)
    threads = MutualInformation(k=5, n_permutations=2, seed=1, n_jobs=2).fit(targets, inputs)
    np.testing.assert_array_equal(est.unbiased_, threads.unbiased_)
    assert len(calls) == 1 + 1 + 2  # mi_matrix above, then the estimator's MI and 2 shuffles


def test_mapper_function_pickles_for_process_pools():
    import pickle

    targets, inputs = _data()

    def pickling_mapper(fn, items):  # what a process pool does to the function
        return map(pickle.loads(pickle.dumps(fn)), items)

    ref = mi_matrix(targets, inputs, k=5)
    np.testing.assert_array_equal(mi_matrix(targets, inputs, k=5, mapper=pickling_mapper), ref)


def test_a_discrete_column_gives_the_same_mi_whatever_its_encoding():
    from clustering.mutual_info import DISCRETE_MIN_COUNT, _discrete_ranks

    rng = np.random.default_rng(11)
    n, k = 3000, 150
    ids = rng.integers(0, 40, n).astype(float)
    t = np.where(rng.random(n) < 0.1, 0.0, 0.02 * ids + rng.normal(scale=0.3, size=n))
    scaled = ids / 40.0  # the same ids in [0, 1)
    shifted = 3.0 * ids + 7.0
    # the definition on rank / number of values (here the ids / 40)
    ref = _mixed_ksg_reference(t, scaled, k)
    for enc in (ids, scaled, shifted):
        assert mixed_ksg(t, enc, k) == pytest.approx(ref, abs=1e-9)
        assert mixed_ksg(enc, t, k) == pytest.approx(ref, abs=1e-9)
    # without the recoding the encoding would matter: the definition on the integer ids differs
    assert abs(_mixed_ksg_reference(t, ids, k) - ref) > 1e-3
    # a continuous or finely quantised column is left as it is
    assert _discrete_ranks(t) is None
    assert _discrete_ranks(np.round(rng.normal(size=n) * 100) / 100) is None
    few = rng.integers(0, n // DISCRETE_MIN_COUNT, n) * 0.5
    values, inverse = np.unique(few, return_inverse=True)
    np.testing.assert_array_equal(_discrete_ranks(few), inverse / len(values))
