"""Logistic probes: checked against statsmodels' Logit and the objective's optimality, on synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats as st

from claimkit.probe import Probe, mean_pool, probe_report, train_probe

D = 20


def classes(n: int, seed: int, separation: float = 3.0, shift: np.ndarray | None = None):
    """Target rows around +separation/2 on axis 0, others around -separation/2; unit noise."""
    rng = np.random.default_rng(seed)
    mu = np.zeros(D)
    mu[0] = separation / 2
    pos = rng.normal(size=(n, D)) + mu
    neg = rng.normal(size=(n, D)) - mu
    if shift is not None:
        pos, neg = pos + shift, neg + shift
    return pos, neg


@pytest.fixture(scope="module")
def probe() -> Probe:
    pos, neg = classes(200, seed=0)
    return train_probe(pos, neg)


def test_separable_data_is_classified(probe):
    assert probe.converged and probe.d == D and (probe.n_pos, probe.n_neg) == (200, 200)
    pos, neg = classes(300, seed=1)
    report = probe_report(probe, pos, neg)
    assert report.accuracy.estimate > 0.9  # Bayes accuracy at separation 3 is Phi(1.5) = 0.93
    assert report.mean_confidence.estimate > 0.8
    assert report.mean_confidence_neg.estimate < 0.2
    assert np.argmax(np.abs(probe.direction())) == 0  # it reads the axis that separates


def test_probe_transfers_to_data_shifted_off_its_direction(probe):
    shift = np.zeros(D)
    shift[1:6] = 2.0  # a context change orthogonal to what separates the classes
    pos, neg = classes(300, seed=2, shift=shift)
    assert probe_report(probe, pos, neg).accuracy.low > 0.85


def test_shift_along_its_direction_lowers_confidence(probe):
    """What a preamble would do if it moved activations away from the target direction."""
    plain, _ = classes(300, seed=3)
    moved = plain.copy()
    moved[:, 0] -= 3.0
    before, after = probe_report(probe, plain), probe_report(probe, moved)
    assert before.mean_confidence.low > after.mean_confidence.high
    assert after.mean_confidence.estimate < 0.3


def test_unregularised_fit_matches_statsmodels_logit():
    sm = pytest.importorskip("statsmodels.api")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 3)) * [1.0, 3.0, 0.5] + [0.0, 1.0, -2.0]
    logit = 0.8 * x[:, 0] - 0.3 * x[:, 1] + 1.5 * x[:, 2] + 2.0
    y = rng.random(400) < 1 / (1 + np.exp(-logit))
    probe = train_probe(x[y], x[~y], C=1e8)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    mle = sm.Logit(y.astype(float), sm.add_constant(z)).fit(disp=0).params
    assert probe.intercept == pytest.approx(mle[0], abs=1e-3)
    np.testing.assert_allclose(probe.coef, mle[1:], atol=1e-3)
    # and in raw units: P(y | x) is the same function
    np.testing.assert_allclose(probe.confidence(x), 1 / (1 + np.exp(-(sm.add_constant(z) @ mle))), atol=1e-4)


def test_regularised_fit_is_the_optimum_of_its_objective():
    pos, neg = classes(50, seed=4, separation=1.0)
    probe = train_probe(pos, neg, C=0.05)
    x = np.vstack([pos, neg])
    y = np.r_[np.ones(50), -np.ones(50)]
    z = (x - x.mean(axis=0)) / x.std(axis=0)

    def objective(w, b):
        return 0.5 * w @ w + 0.05 * np.logaddexp(0, -y * (z @ w + b)).sum()

    best = objective(probe.coef, probe.intercept)
    rng = np.random.default_rng(0)
    for _ in range(20):
        step = rng.normal(size=D + 1) * 1e-3
        assert objective(probe.coef + step[:D], probe.intercept + step[D]) >= best - 1e-12
    weaker = train_probe(pos, neg, C=1.0)
    assert np.linalg.norm(probe.coef) < np.linalg.norm(weaker.coef)  # stronger penalty, smaller weights


def test_fit_is_deterministic():
    pos, neg = classes(100, seed=6)
    a, b = train_probe(pos, neg), train_probe(pos, neg)
    assert np.array_equal(a.coef, b.coef) and a.intercept == b.intercept


def test_report_intervals_are_the_documented_ones(probe):
    pos, neg = classes(80, seed=7)
    report = probe_report(probe, pos, neg, resamples=999, seed=1)
    conf = probe.confidence(pos)
    assert report.mean_confidence.estimate == pytest.approx(conf.mean())
    assert report.mean_confidence.low <= report.mean_confidence.estimate <= report.mean_confidence.high
    assert report.confidences == pytest.approx(tuple(conf))
    correct = int((conf >= 0.5).sum() + (probe.confidence(neg) < 0.5).sum())
    exact = st.binomtest(correct, 160).proportion_ci(confidence_level=0.95, method="exact")
    assert (report.correct, report.n, report.n_pos, report.n_neg) == (correct, 160, 80, 80)
    assert (report.accuracy.low, report.accuracy.high) == pytest.approx((exact.low, exact.high))
    assert report.accuracy.low <= report.accuracy.estimate <= report.accuracy.high
    names = [e.name for e in report.estimates("wf3.")]
    assert names == ["wf3.mean_confidence", "wf3.accuracy", "wf3.mean_confidence_other"]


def test_report_on_target_rows_only(probe):
    pos, _ = classes(40, seed=8)
    report = probe_report(probe, pos)
    assert report.n == report.n_pos == 40 and report.mean_confidence_neg is None
    assert report.correct == int((probe.confidence(pos) >= 0.5).sum())


def test_probe_round_trips_through_json(probe):
    again = Probe.from_dict(json.loads(json.dumps(probe.to_dict())))
    x, _ = classes(10, seed=9)
    assert np.array_equal(again.confidence(x), probe.confidence(x))


def test_constant_features_do_not_break_the_fit():
    pos, neg = classes(50, seed=10)
    pos[:, 5] = neg[:, 5] = 3.0
    probe = train_probe(pos, neg)
    assert probe.converged and probe.scale[5] == 1.0 and np.isfinite(probe.coef).all()


def test_unconverged_fit_says_so():
    pos, neg = classes(50, seed=11)
    assert not train_probe(pos, neg, max_iter=1).converged


def test_mean_pool_over_tokens_and_spans():
    acts = [np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 9.0]]), np.array([[0.0, 1.0]])]
    assert mean_pool(acts).tolist() == [[3.0, 5.0], [0.0, 1.0]]
    assert mean_pool(acts, spans=[(1, 3), None]).tolist() == [[4.0, 6.5], [0.0, 1.0]]
    with pytest.raises(ValueError, match="no tokens"):
        mean_pool(acts, spans=[(3, 3), None])
    with pytest.raises(ValueError, match="2 spans for 1"):
        mean_pool(acts[:1], spans=[None, None])


def test_mean_pool_takes_tensors():
    torch = pytest.importorskip("torch")
    assert mean_pool([torch.ones(4, 3)]).tolist() == [[1.0, 1.0, 1.0]]


def test_bad_input_is_explained(probe):
    with pytest.raises(ValueError, match="features"):
        train_probe(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match="C must"):
        train_probe(np.ones((3, 4)), np.zeros((3, 4)), C=0)
    with pytest.raises(ValueError, match="trained on 20"):
        probe.confidence(np.ones((2, 7)))
    with pytest.raises(ValueError, match="NaN"):
        probe.confidence(np.full((2, D), np.nan))


def test_choose_c_prefers_regularisation_when_the_classes_are_noise_and_reports_every_score():
    from claimkit.probe import choose_c

    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0, 1, (30, 50)), rng.normal(0, 1, (30, 50))  # nothing to learn: strong L2 wins
    c, cv = choose_c(pos, neg, grid=[0.001, 1.0, 100.0], folds=5, seed=1)
    assert c == 0.001
    assert set(cv["log_loss"]) == {"0.001", "1", "100"} and cv["folds"] == 5
    assert cv["log_loss"]["0.001"] < cv["log_loss"]["100"]


def test_choose_c_is_deterministic_for_a_seed_and_needs_two_rows_a_class():
    from claimkit.probe import choose_c

    rng = np.random.default_rng(2)
    pos, neg = rng.normal(1, 1, (20, 5)), rng.normal(-1, 1, (20, 5))
    assert choose_c(pos, neg, grid=[0.01, 1.0], seed=3) == choose_c(pos, neg, grid=[0.01, 1.0], seed=3)
    with pytest.raises(ValueError, match="at least 2 rows of each class"):
        choose_c(pos[:1], neg, grid=[1.0])
