"""Linear probes on activations: is "target content" linearly readable, and how confidently?

A probe is an L2-regularised logistic regression fitted on standardised
features: each feature is centred and scaled by its mean and standard deviation
over the training rows (constant features are left unscaled), then

    minimise  0.5 * ||w||^2 + C * sum_i log(1 + exp(-y_i (w . z_i + b)))

over w and the unpenalised intercept b, with y = +1 for target rows and -1 for
the others — the objective of scikit-learn's `LogisticRegression(C=C)`. It is
fitted by scipy's L-BFGS-B from w = 0 with the exact gradient: the objective is
strictly convex, so the fit is deterministic and needs no seed.

Rows are usually one vector per generation: the mean of the residual stream over
its generated tokens (`mean_pool`, optionally over a token span such as the code
block). Per-token probes are the same call with token rows stacked.

numpy and scipy only; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from claimkit.stats import Interval, bootstrap_mean_ci, proportion_ci


@dataclass(frozen=True, eq=False)
class Probe:
    """A fitted probe. `confidence(x)` is P(target) for each row of x [n, d]."""

    coef: np.ndarray  # [d], on standardised features
    intercept: float
    mean: np.ndarray  # [d], feature means of the training rows
    scale: np.ndarray  # [d], feature standard deviations (1 where constant)
    C: float
    n_pos: int
    n_neg: int
    converged: bool
    iterations: int
    message: str = field(default="")

    @property
    def d(self) -> int:
        return int(self.coef.shape[0])

    def decision(self, x: Any) -> np.ndarray:
        """The logit w . z + b of each row."""
        z = (_as_rows(x, "x", d=self.d) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def confidence(self, x: Any) -> np.ndarray:
        """P(target) of each row, in [0, 1]."""
        from scipy.special import expit

        return expit(self.decision(x))

    def predict(self, x: Any, threshold: float = 0.5) -> np.ndarray:
        """True where the probe says target (confidence >= threshold)."""
        return self.confidence(x) >= threshold

    def direction(self) -> np.ndarray:
        """The probe's direction in raw activation space (coef / scale), e.g. to compare with SAE decoder rows."""
        return self.coef / self.scale

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for caches and reports."""
        return {
            "coef": self.coef.tolist(), "intercept": self.intercept, "mean": self.mean.tolist(),
            "scale": self.scale.tolist(), "C": self.C, "n_pos": self.n_pos, "n_neg": self.n_neg,
            "converged": self.converged, "iterations": self.iterations, "message": self.message,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Probe":
        arrays = {name: np.asarray(data[name], dtype=np.float64) for name in ("coef", "mean", "scale")}
        rest = {name: data[name] for name in ("intercept", "C", "n_pos", "n_neg", "converged", "iterations")}
        return cls(**arrays, **rest, message=data.get("message", ""))


@dataclass(frozen=True)
class ProbeReport:
    """A probe scored on held-out rows.

    mean_confidence: mean P(target) on the target rows, BCa bootstrap interval.
    accuracy: share of all rows classified correctly at `threshold` (target rows at
    or above it, others below), exact Clopper-Pearson interval.
    """

    mean_confidence: Interval
    accuracy: Interval
    n: int
    n_pos: int
    n_neg: int
    correct: int
    threshold: float
    confidences: tuple[float, ...]  # per target row
    mean_confidence_neg: Interval | None = None
    confidences_neg: tuple[float, ...] | None = None

    def estimates(self, prefix: str = "") -> tuple[Any, ...]:
        """The report as claimkit.verdict Estimates, for a claim's evidence."""
        from claimkit.verdict import Estimate

        out = [
            Estimate(f"{prefix}mean_confidence", _est(self.mean_confidence), self.mean_confidence.low,
                     self.mean_confidence.high, self.mean_confidence.method, n=self.n_pos),
            Estimate(f"{prefix}accuracy", _est(self.accuracy), self.accuracy.low, self.accuracy.high,
                     self.accuracy.method, n=self.n, successes=self.correct),
        ]  # fmt: skip
        if self.mean_confidence_neg is not None:
            neg = self.mean_confidence_neg
            name = f"{prefix}mean_confidence_other"
            out.append(Estimate(name, _est(neg), neg.low, neg.high, neg.method, n=self.n_neg))
        return tuple(out)


def train_probe(pos: Any, neg: Any, *, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-6) -> Probe:
    """Fit a probe that separates target rows `pos` [N, d] from other rows `neg` [M, d].

    C is the inverse L2 strength, as in scikit-learn (smaller C, stronger
    regularisation). A fit that stops before converging is returned with
    converged=False and the optimiser's message; callers should report it.
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    a, b = _as_rows(pos, "pos"), _as_rows(neg, "neg")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"pos rows have {a.shape[1]} features but neg rows have {b.shape[1]}")
    if not (isinstance(C, (int, float)) and C > 0):
        raise ValueError(f"C must be a positive number, got {C!r}")
    x = np.vstack([a, b])
    y = np.concatenate([np.ones(len(a)), -np.ones(len(b))])
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale <= 1e-12 * max(1.0, float(np.abs(x).max()))] = 1.0
    z = (x - mean) / scale
    d = z.shape[1]

    def objective(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, bias = params[:d], params[d]
        margin = y * (z @ w + bias)
        loss = 0.5 * w @ w + C * np.logaddexp(0.0, -margin).sum()
        g = -C * y * expit(-margin)  # d loss / d logit
        return float(loss), np.concatenate([w + z.T @ g, [g.sum()]])

    result = minimize(
        objective, np.zeros(d + 1), jac=True, method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-12},
    )  # fmt: skip
    return Probe(
        coef=result.x[:d].copy(),
        intercept=float(result.x[d]),
        mean=mean,
        scale=scale,
        C=float(C),
        n_pos=len(a),
        n_neg=len(b),
        converged=bool(result.success),
        iterations=int(result.nit),
        message=str(result.message),
    )


def choose_c(
    pos: Any, neg: Any, *, grid: Sequence[float], folds: int = 5, seed: int = 0
) -> tuple[float, dict[str, Any]]:
    """The C of `grid` with the lowest mean held-out log-loss over stratified `folds`, and the scores.

    With a few dozen rows in hundreds of dimensions a fixed C is arbitrary; choosing it
    inside the training rows keeps the rows a probe is scored on out of the choice. Folds
    are drawn per class with a seeded permutation; ties go to the smaller C (the
    stronger regularisation). With fewer rows of a class than folds, folds shrink to it.
    """
    a, b = _as_rows(pos, "pos"), _as_rows(neg, "neg")
    grid = sorted(float(c) for c in grid)
    if not grid or any(c <= 0 for c in grid):
        raise ValueError(f"grid must hold positive values of C, got {grid!r}")
    k = min(int(folds), len(a), len(b))
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 rows of each class, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    fold_a = rng.permutation(len(a)) % k
    fold_b = rng.permutation(len(b)) % k
    losses = {}
    for c in grid:
        total, count = 0.0, 0
        for f in range(k):
            probe = train_probe(a[fold_a != f], b[fold_b != f], C=c)
            p_pos = np.clip(probe.confidence(a[fold_a == f]), 1e-12, 1.0)
            p_neg = np.clip(1.0 - probe.confidence(b[fold_b == f]), 1e-12, 1.0)
            total -= float(np.log(p_pos).sum() + np.log(p_neg).sum())
            count += len(p_pos) + len(p_neg)
        losses[c] = total / count
    best = min(grid, key=lambda c: (losses[c], c))
    return best, {"folds": k, "log_loss": {f"{c:g}": losses[c] for c in grid}, "chosen": best}


def probe_report(
    probe: Probe,
    pos_eval: Any,
    neg_eval: Any = None,
    *,
    threshold: float = 0.5,
    level: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> ProbeReport:
    """Score `probe` on held-out target rows `pos_eval` (and, if given, other rows `neg_eval`).

    Mean confidence: BCa bootstrap (claimkit.stats.bootstrap_mean_ci); accuracy:
    exact Clopper-Pearson (claimkit.stats.proportion_ci) over all rows given.
    """
    conf_pos = probe.confidence(pos_eval)
    conf_neg = None if neg_eval is None else probe.confidence(neg_eval)
    correct = int((conf_pos >= threshold).sum())
    n = len(conf_pos)
    neg_interval = None
    if conf_neg is not None:
        correct += int((conf_neg < threshold).sum())
        n += len(conf_neg)
        neg_interval = bootstrap_mean_ci(conf_neg, level=level, resamples=resamples, seed=seed)
    return ProbeReport(
        mean_confidence=bootstrap_mean_ci(conf_pos, level=level, resamples=resamples, seed=seed),
        accuracy=proportion_ci(correct, n, level=level),
        n=n,
        n_pos=len(conf_pos),
        n_neg=0 if conf_neg is None else len(conf_neg),
        correct=correct,
        threshold=float(threshold),
        confidences=tuple(float(c) for c in conf_pos),
        mean_confidence_neg=neg_interval,
        confidences_neg=None if conf_neg is None else tuple(float(c) for c in conf_neg),
    )


def mean_pool(acts: Iterable[Any], spans: Sequence[tuple[int, int] | None] | None = None) -> np.ndarray:
    """One vector per generation [G, d]: the mean of its [T, d] activations over tokens.

    spans[i] = (start, end) restricts generation i to tokens start:end (e.g. its
    code block); None, or no spans, means all its tokens.
    """
    rows = []
    span_list = list(spans) if spans is not None else None
    for i, a in enumerate(acts):
        x = _to_numpy(a)
        if x.ndim != 2:
            raise ValueError(f"generation {i}: activations must be [tokens, d], got shape {x.shape}")
        span = span_list[i] if span_list is not None and i < len(span_list) else None
        if span is not None:
            start, end = span
            x = x[start:end]
        if x.shape[0] == 0:
            raise ValueError(f"generation {i}: no tokens to average (span {span}); drop it or fix its span")
        rows.append(x.mean(axis=0))
    if span_list is not None and len(span_list) != len(rows):
        raise ValueError(f"{len(span_list)} spans for {len(rows)} generations")
    if not rows:
        raise ValueError("no generations given")
    return np.stack(rows)


def _est(interval: Interval) -> float:
    return float(interval.estimate) if interval.estimate is not None else float("nan")


def _as_rows(values: Any, what: str, *, d: int | None = None) -> np.ndarray:
    x = _to_numpy(values)
    if x.ndim == 1 and d is not None and x.shape[0] == d:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{what} must be [rows, features], got shape {x.shape}")
    if x.shape[0] < 1:
        raise ValueError(f"{what} has no rows")
    if d is not None and x.shape[1] != d:
        raise ValueError(f"{what} has {x.shape[1]} features but the probe was trained on {d}: wrong layer or model?")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return x


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
