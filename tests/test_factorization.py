"""Block diagonalization: recovery of planted blocks, partition invariants, JSON, scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clustering.factorization import (
    Factorization,
    binarize_columns,
    bipartite_modularity,
    block_diagonalize,
    eigengap_n_clusters,
)

ROWS = [[0, 3, 5, 7], [1, 4], [2, 6, 8]]
COLS = [[1, 4], [0], [2, 3]]


def _planted(seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    m = noise * rng.random((9, 5))
    for r, c in zip(ROWS, COLS):
        m[np.ix_(r, c)] += 0.2 + rng.random((len(r), len(c)))
    return m


def _is_partition(fac, n_r, n_c):
    rows = sorted(i for g in fac.row_groups for i in g)
    cols = sorted(j for g in fac.col_groups for j in g)
    return (
        rows == list(range(n_r))
        and cols == list(range(n_c))
        and len(fac.row_groups) == len(fac.col_groups)
    )


EQ_ROWS = [[0, 2, 4], [1, 3, 5]]
EQ_COLS = [[0, 1], [2, 3]]


def _planted_equal(seed=0):
    """Blocks whose rows are the same share of every column (what per-column quantiles need)."""
    rng = np.random.default_rng(seed)
    m = 0.01 * rng.random((6, 4))
    for r, c in zip(EQ_ROWS, EQ_COLS):
        m[np.ix_(r, c)] += 0.2 + rng.random((len(r), len(c)))
    return m


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "components", "quantile": 0.5},
        {"method": "auto-threshold"},
        {"method": "auto-threshold", "scan": "global"},
        {"method": "spectral"},
    ],
)
def test_recovers_planted_equal_blocks(kwargs):
    fac = block_diagonalize(_planted_equal(), **kwargs)
    assert fac.score(EQ_ROWS, EQ_COLS) == {"ari_rows": 1.0, "ari_cols": 1.0, "consensus": 1.0}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "auto-threshold", "scan": "global"},
        {"method": "threshold", "threshold": 0.1},
        {"method": "spectral"},
        {"method": "spectral", "n_clusters": 3},
    ],
)
def test_recovers_planted_unequal_blocks(kwargs):
    fac = block_diagonalize(_planted(), **kwargs)
    assert fac.score(ROWS, COLS) == {"ari_rows": 1.0, "ari_cols": 1.0, "consensus": 1.0}
    assert sorted(map(sorted, fac.row_groups)) == sorted(ROWS)


@pytest.mark.parametrize("method", ["components", "auto-threshold", "spectral"])
@pytest.mark.parametrize("seed", range(4))
def test_every_row_and_column_in_exactly_one_block(method, seed):
    m = np.random.default_rng(seed).normal(size=(7 + seed, 4 + seed))
    fac = block_diagonalize(m, method=method)
    assert _is_partition(fac, *m.shape)
    assert sorted(fac.row_order) == list(range(m.shape[0])) and sorted(fac.col_order) == list(
        range(m.shape[1])
    )


def test_thesis_binarization_is_per_column_quantile():
    m = np.array([[1.0, 10.0], [2.0, 30.0], [3.0, 20.0], [4.0, 40.0]])
    b = binarize_columns(m, 0.5)
    np.testing.assert_array_equal(b, [[0, 0], [0, 1], [1, 0], [1, 1]])
    fac = block_diagonalize(m, quantile=0.5)
    np.testing.assert_array_equal(fac.binary, b)
    assert fac.params == {"quantile": 0.5} and fac.method == "components"


def test_threshold_method_with_null_upper_array():
    m = _planted()
    fac = block_diagonalize(m, method="threshold", threshold=np.full(m.shape, 0.1))
    assert fac.score(ROWS, COLS)["ari_rows"] == 1.0 and fac.params == {"threshold": "array"}
    assert block_diagonalize(m, method="threshold", threshold=-1.0).n_blocks == 1


def test_per_column_quantiles_fail_on_unequal_blocks_global_scan_does_not():
    m = _planted()
    for q in np.arange(0.0, 1.0, 0.05):
        assert block_diagonalize(m, quantile=q).score(ROWS, COLS)["ari_rows"] < 1.0
    auto = block_diagonalize(m, method="auto-threshold", scan="global")
    assert auto.score(ROWS, COLS)["ari_rows"] == 1.0
    assert auto.params["modularity"] == pytest.approx(
        bipartite_modularity(m, auto.row_labels(), auto.col_labels())
    )


def test_eigengap_counts_blocks():
    assert eigengap_n_clusters(_planted()) == 3


def test_json_round_trip_and_architecture_format():
    fac = block_diagonalize(_planted(), quantile=0.5)
    text = fac.to_json(env="l2rpn_case14_sandbox")
    data = json.loads(text)
    assert list(data) == ["format", "env", "method", "params", "clusters"]
    assert data["format"] == 1 and data["params"] == {"quantile": 0.5}
    assert all(set(c) == {"substations", "lines"} for c in data["clusters"])
    back = Factorization.from_json(text)
    assert back.row_groups == fac.row_groups and back.col_groups == fac.col_groups
    assert back.method == fac.method and back.params == fac.params
    custom = Factorization.from_json(
        fac.to_json(row_key="s", col_key="a"), row_key="s", col_key="a"
    )
    assert custom.row_groups == fac.row_groups


def test_json_is_readable_by_the_env_side_loader():
    from distributed_grid2op.factorization_file import parse_factorization

    fac = block_diagonalize(_planted(), quantile=0.5)
    parsed = parse_factorization(json.loads(fac.to_json(env="x")), n_sub=5, n_line=9)
    assert [list(c.lines) for c in parsed.clusters] == fac.row_groups


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "malformed"),
        ('{"format": 2, "clusters": []}', "format 1"),
        ('{"format": 1, "clusters": [{"lines": [0]}]}', "must have lists"),
        (
            '{"format": 1, "clusters": [{"lines": [0, 0], "substations": [0]}]}',
            "more than one group",
        ),
        ('{"format": 1, "clusters": [{"lines": [1], "substations": [0]}]}', "in no group"),
    ],
)
def test_from_json_rejects_bad_documents(text, message):
    with pytest.raises(ValueError, match=message):
        Factorization.from_json(text)


def test_score_is_label_permutation_invariant_and_detects_errors():
    fac = Factorization(ROWS, COLS)
    assert fac.score(ROWS[::-1], COLS[::-1])["consensus"] == 1.0
    wrong = Factorization([[0, 1, 2, 3, 4, 5, 6, 7, 8]], [[0, 1, 2, 3, 4]])
    s = wrong.score(ROWS, COLS)
    assert s["ari_rows"] == 0.0 and s["consensus"] < 1.0
    labels_r = np.array([0, 1, 2, 0, 1, 0, 2, 0, 2])
    labels_c = np.array([1, 0, 2, 2, 0])
    assert fac.score(labels_r, labels_c)["ari_cols"] == 1.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"quantile": 1.5}, "quantile must be in"),
        ({"quantile": -0.1}, "quantile must be in"),
        ({"method": "nope"}, "method must be one of"),
        ({"method": "threshold"}, "needs threshold"),
        ({"method": "spectral", "n_clusters": 99}, "n_clusters"),
        ({"method": "auto-threshold", "scan": "x"}, "scan must be"),
        ({"method": "auto-threshold", "grid": [0.5, 2.0]}, "quantile must be in"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        block_diagonalize(_planted(), **kwargs)


def test_invalid_matrix_raises_value_error():
    m = _planted()
    m[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        block_diagonalize(m)
    with pytest.raises(ValueError, match="2-D"):
        block_diagonalize(np.zeros(4))


# --------------------------------------------------------------------------- effect profiles


def _two_area_effects(seed=0, n_per=12):
    """Planted effects: rows and columns on two chains ("areas") joined by one weak link;
    an input's effect on a row decays by 10x per 5 steps along the chain and by 1000x across
    the link, times noise."""
    rng = np.random.default_rng(seed)
    pos = np.arange(2 * n_per)
    area = (pos >= n_per).astype(int)
    dist = 0.2 * np.abs(pos[:, None] - pos[None, :]) + 3.0 * (area[:, None] != area[None, :])
    effects = 10.0 ** (-dist) * rng.uniform(0.5, 2.0, size=dist.shape)
    return effects, area


def test_profile_clusters_recover_planted_areas_given_or_not_the_number():
    from sklearn.metrics import adjusted_rand_score

    from clustering.factorization import profile_clusters

    effects, area = _two_area_effects()
    for n in (2, None):
        fac = profile_clusters(effects, n_clusters=n)
        assert fac.n_blocks == 2
        assert adjusted_rand_score(area, fac.col_labels()) == 1.0
        assert adjusted_rand_score(area, fac.row_labels()) == 1.0
    assert fac.params["n_clusters_auto"] is True
    assert block_diagonalize(effects, method="profiles", n_clusters=3).n_blocks == 3


def test_profile_clusters_ignore_scale_and_shuffled_effects_do_not_look_like_areas():
    from sklearn.metrics import adjusted_rand_score

    from clustering.factorization import effect_profiles, profile_clusters

    effects, area = _two_area_effects(seed=1)
    np.testing.assert_allclose(effect_profiles(effects * 1e3), effect_profiles(effects), atol=1e-9)
    rng = np.random.default_rng(0)
    # which input moved which variable shuffled away: each row's entries permuted
    shuffled = np.array([row[rng.permutation(len(row))] for row in effects])
    fac = profile_clusters(shuffled, n_clusters=2)
    assert adjusted_rand_score(area, fac.col_labels()) < 0.5
    with pytest.raises(ValueError, match="non-negative"):
        effect_profiles(-effects)


def _chain_effects(rng, n_areas=3, n_per=10, noise=0.5):
    """Planted effects on ``n_areas`` chains joined end to end by weak links: decay 10x per
    5 steps along a chain, 1000x across a link, times log-normal noise (one draw of data)."""
    pos = np.arange(n_areas * n_per)
    area = pos // n_per
    dist = 0.2 * np.abs(pos[:, None] - pos[None, :]) + 3.0 * np.abs(area[:, None] - area[None, :])
    return 10.0 ** (-dist) * np.exp(noise * rng.standard_normal(dist.shape)), area


def test_split_halves_reproduce_the_planted_number_and_nothing_in_shuffled_data():
    from sklearn.metrics import adjusted_rand_score

    from clustering.factorization import profile_clusters, reproducible_n_clusters

    rng = np.random.default_rng(3)
    halves = [(_chain_effects(rng)[0], _chain_effects(rng)[0]) for _ in range(3)]
    effects, area = _chain_effects(rng)
    k, scores = reproducible_n_clusters(halves)
    assert k == 3 and scores[2] < 0.8 <= scores[3]
    fac = profile_clusters(effects, halves=halves)
    assert fac.n_blocks == 3 and fac.params["n_clusters_rule"] == "split halves"
    assert adjusted_rand_score(area, fac.col_labels()) == 1.0
    assert adjusted_rand_score(area, fac.row_labels()) == 1.0

    def shuffled(m):  # which input moved which variable shuffled away
        return np.array([row[rng.permutation(len(row))] for row in m])

    k0, scores0 = reproducible_n_clusters([(shuffled(a), shuffled(b)) for a, b in halves])
    assert k0 == 1 and max(scores0.values()) < 0.8
    with pytest.raises(ValueError, match="halves"):
        reproducible_n_clusters([])
    # an input without any effect in one half (a flat profile) correlates with nothing
    a, b = halves[0]
    a = a.copy()
    a[:, 0] = 0.0
    k1, _ = reproducible_n_clusters([(a, b)])
    assert 1 <= k1 <= 8


def test_rows_join_the_block_that_moves_them_most_on_average():
    from clustering.factorization import profile_clusters

    effects, area = _two_area_effects(seed=2)
    # one input of area 0 has a spurious large effect on the last row (an area-1 row)
    effects[-1, 0] = 2 * effects[-1].max()
    fac = profile_clusters(effects, n_clusters=2)
    assert fac.col_labels()[0] != fac.col_labels()[-1]  # the two areas
    assert fac.row_labels()[-1] == fac.col_labels()[-1]  # the row stays with area 1's inputs
    assert np.argmax(effects[-1]) == 0  # the single largest effect would have carried it away


def test_merge_gap_n_clusters_takes_the_largest_gap_between_merge_heights():
    from clustering.factorization import merge_gap_n_clusters

    # ascending merge heights; the 4 -> 3 merge (5.0) is far below the 3 -> 2 one (40.0)
    assert merge_gap_n_clusters([1.0, 2.0, 5.0, 40.0, 45.0], max_clusters=6) == 3
    assert merge_gap_n_clusters([1.0, 2.0, 3.0, 50.0], max_clusters=6) == 2
    assert merge_gap_n_clusters([], max_clusters=6) == 1
