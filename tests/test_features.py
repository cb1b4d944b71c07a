"""Feature selection on one split, magnitudes on the other; checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from claimkit.features import (
    FeatureSelection,
    feature_magnitudes,
    mann_whitney_greater,
    per_generation,
    select_features,
    split_indices,
)
from claimkit.stats import mann_whitney

# -- split_indices ------------------------------------------------------------------


@pytest.mark.parametrize("n, fraction", [(200, 0.5), (7, 0.3), (2, 0.5), (10, 0.01), (10, 0.99)])
def test_split_is_disjoint_and_covers_everything(n, fraction):
    select, measure = split_indices(n, fraction, seed=0)
    assert set(select).isdisjoint(measure)
    assert sorted([*select, *measure]) == list(range(n))
    assert len(select) == min(max(round(fraction * n), 1), n - 1)
    assert len(measure) >= 1
    assert list(select) == sorted(select) and list(measure) == sorted(measure)


def test_split_is_deterministic_for_a_seed():
    a = split_indices(100, 0.5, seed=3)
    b = split_indices(100, 0.5, seed=3)
    c = split_indices(100, 0.5, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("n, fraction", [(1, 0.5), (10, 0.0), (10, 1.0), (10, -0.2), (2.5, 0.5)])
def test_split_rejects_impossible_requests(n, fraction):
    with pytest.raises(ValueError):
        split_indices(n, fraction, seed=0)


# -- reductions over tokens ----------------------------------------------------------

GENERATIONS = [
    np.array([[0.0, 1.0, 5.0], [2.0, 0.0, 1.0]]),
    np.array([[4.0, 0.0, 0.0]]),
    np.array([[1.0, 3.0, 0.0], [1.0, 1.0, 0.0], [1.0, 2.0, 3.0]]),
]


def test_per_generation_max_and_mean():
    assert per_generation(GENERATIONS, "max").tolist() == [[2, 1, 5], [4, 0, 0], [1, 3, 3]]
    assert np.allclose(per_generation(GENERATIONS, "mean"), [[1, 0.5, 3], [4, 0, 0], [1, 2, 1]])


def test_per_generation_takes_lazy_iterables_and_tensors():
    torch = pytest.importorskip("torch")
    lazy = (torch.tensor(g, dtype=torch.float32) for g in GENERATIONS)
    assert per_generation(lazy).tolist() == [[2, 1, 5], [4, 0, 0], [1, 3, 3]]


def test_feature_magnitudes_per_generation():
    assert feature_magnitudes(GENERATIONS, 2).tolist() == [5, 0, 3]
    assert feature_magnitudes(GENERATIONS, [2, 0], reduce="mean").tolist() == [[3, 1], [0, 4], [1, 1]]
    assert np.array_equal(feature_magnitudes(GENERATIONS, [0, 1, 2]), per_generation(GENERATIONS))


def test_reductions_reject_bad_input():
    with pytest.raises(ValueError, match="generation 1 has no tokens"):
        per_generation([np.ones((2, 3)), np.zeros((0, 3))])
    with pytest.raises(IndexError, match="feature ids \\[3\\]"):
        feature_magnitudes(GENERATIONS, [3])
    with pytest.raises(ValueError, match="reduce"):
        feature_magnitudes(GENERATIONS, 0, reduce="median")
    with pytest.raises(ValueError, match="different numbers of features"):
        per_generation([np.ones((1, 3)), np.ones((1, 4))])


# -- select_features ---------------------------------------------------------------


def planted(seed: int = 0, n: int = 60, f: int = 40):
    """Safe and direct generations; features 7 and 3 fire more in direct (7 most)."""
    rng = np.random.default_rng(seed)
    safe = rng.exponential(1.0, size=(n, f))
    direct = rng.exponential(1.0, size=(n, f))
    direct[:, 7] += 6.0
    direct[:, 3] += 3.0
    safe[:, 11] += 5.0  # higher in safe: must never be chosen
    return direct, safe


def test_mean_difference_ranks_planted_features_first():
    direct, safe = planted()
    sel = select_features(direct, safe, top_k=2)
    assert isinstance(sel, FeatureSelection)
    assert sel.feature_ids == (7, 3)
    expected = direct.mean(axis=0) - safe.mean(axis=0)
    assert sel.scores == pytest.approx(tuple(expected[[7, 3]]))
    assert sel.n_candidates == int((expected > 0).sum())
    assert (sel.n_pos, sel.n_neg, sel.n_features, sel.method) == (60, 60, 40, "mean_difference")
    assert "#7" in sel.describe()


def test_only_features_higher_in_direct_are_eligible():
    direct = np.array([[1.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    safe = np.array([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    sel = select_features(direct, safe, top_k=3)
    assert sel.feature_ids == (0, 2)  # equal differences (1.0): the lower id first
    assert 1 not in sel.feature_ids and sel.n_candidates == 2


def test_ties_go_to_the_lower_id():
    direct = np.array([[2.0, 3.0, 3.0, 3.0], [2.0, 3.0, 3.0, 3.0]])
    safe = np.zeros((2, 4))
    assert select_features(direct, safe, top_k=2).feature_ids == (1, 2)


def test_fdr_filter_drops_a_feature_driven_by_one_outlier():
    direct, safe = planted()
    direct[0, 20] = 1000.0  # one huge value: the largest mean difference, but no shift in distribution
    plain = select_features(direct, safe, top_k=1)
    assert plain.feature_ids == (20,)
    filtered = select_features(direct, safe, top_k=3, fdr_q=0.1)
    assert filtered.feature_ids[:2] == (7, 3) and 20 not in filtered.feature_ids


def test_fdr_p_values_match_per_feature_tests_and_hand_bh():
    direct, safe = planted(seed=1)
    sel = select_features(direct, safe, top_k=40, fdr_q=0.1)
    p_all = np.array([mann_whitney(direct[:, j], safe[:, j], "greater").p_value for j in range(40)])
    for fid, p in zip(sel.feature_ids, sel.p_values):
        assert p == pytest.approx(p_all[fid], rel=1e-10)
    # Benjamini-Hochberg by hand: p_(i) * m / i, made monotone from the largest p down
    order = np.argsort(p_all)
    m = len(p_all)
    stepped = np.minimum.accumulate((p_all[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    bh = np.empty(m)
    bh[order] = np.minimum(stepped, 1.0)
    for fid, q in zip(sel.feature_ids, sel.p_adjusted):
        assert q == pytest.approx(bh[fid], rel=1e-10) and q <= 0.1
    assert set(sel.feature_ids) == {j for j in range(40) if bh[j] <= 0.1 and direct[:, j].mean() > safe[:, j].mean()}
    assert np.allclose(multipletests(p_all, method="fdr_bh")[1], bh)


def test_constant_features_get_p_one():
    a = np.zeros((5, 2))
    b = np.zeros((5, 2))
    a[:, 1] = np.arange(5) + 10
    b[:, 1] = np.arange(5)
    p = mann_whitney_greater(a, b)
    assert p[0] == 1.0 and p[1] < 0.05


def test_selecting_and_measuring_on_one_split_would_be_biased():
    """Pure noise: the chosen feature 'differs' on the split it was chosen on, not on the other."""
    in_sample, held_out = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        direct, safe = rng.normal(size=(200, 500)), rng.normal(size=(200, 500))
        sel_d, meas_d = split_indices(200, 0.5, seed=seed)
        sel_s, meas_s = split_indices(200, 0.5, seed=seed + 100)
        chosen = select_features(direct[sel_d], safe[sel_s], top_k=1).feature_ids[0]
        in_sample.append(direct[sel_d, chosen].mean() - safe[sel_s, chosen].mean())
        held_out.append(direct[meas_d, chosen].mean() - safe[meas_s, chosen].mean())
    # each difference has sd sqrt(2/100) = 0.14; the largest of 500 sits near 3 sd
    assert np.mean(in_sample) > 0.3
    assert abs(np.mean(held_out)) < 0.1  # sd of this mean: 0.14 / sqrt(20) = 0.03


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(top_k=0), "top_k"),
        (dict(top_k=1, method="knockoff"), "method"),
        (dict(top_k=1, fdr_q=1.5), "fdr_q"),
    ],
)
def test_selection_arguments_are_checked(kwargs, message):
    direct, safe = planted()
    with pytest.raises(ValueError, match=message):
        select_features(direct, safe, **kwargs)


def test_selection_inputs_are_checked():
    with pytest.raises(ValueError, match="one SAE"):
        select_features(np.ones((3, 4)), np.ones((3, 5)), top_k=1)
    bad = np.ones((3, 4))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        select_features(bad, np.ones((3, 4)), top_k=1)
    with pytest.raises(ValueError, match="at least 2"):
        select_features(np.ones((1, 4)), np.ones((3, 4)), top_k=1)
