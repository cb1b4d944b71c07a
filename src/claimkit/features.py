"""Choose SAE features that separate two kinds of generation, then measure them honestly.

A feature chosen because it differs most between two sets of generations will,
measured on those same generations, look more different than it is (selection
bias, "double dipping"). Claims therefore split the generations of each
condition with `split_indices`, choose features on one part (`select_features`)
and measure their magnitudes on the other (`feature_magnitudes`).

The unit throughout is the generation, not the token: tokens of one generation
are correlated, so tests and intervals over tokens would overstate n. A
generation's feature activations [T, F] are reduced over its tokens to one value
per feature (`per_generation`): "max" (default) is the feature's peak over the
generated tokens — what "the feature fires at 150-180 in these generations"
reads as; "mean" averages over the tokens.

Nothing here imports torch at module import; inputs may be torch tensors or numpy arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np

Reduce = Literal["max", "mean"]
REDUCTIONS = ("max", "mean")
METHODS = ("mean_difference",)


@dataclass(frozen=True)
class FeatureSelection:
    """The chosen features, best first, and how they were chosen.

    scores: mean(pos) - mean(neg) per chosen feature. p_values / p_adjusted:
    one-sided Mann-Whitney p (pos > neg) and its Benjamini-Hochberg adjustment
    over all features, when an FDR filter was asked for. n_candidates: features
    eligible before taking the top k (positive difference, and passing the filter).
    """

    feature_ids: tuple[int, ...]
    scores: tuple[float, ...]
    method: str
    n_pos: int
    n_neg: int
    n_features: int
    n_candidates: int
    fdr_q: float | None = None
    p_values: tuple[float, ...] | None = None
    p_adjusted: tuple[float, ...] | None = None

    def describe(self) -> str:
        ids = ", ".join(f"#{i} ({s:+.3g})" for i, s in zip(self.feature_ids, self.scores))
        fdr = f", BH FDR q={self.fdr_q:g}" if self.fdr_q is not None else ""
        return (
            f"{len(self.feature_ids)} of {self.n_candidates} candidate features by {self.method}{fdr} "
            f"(pos n={self.n_pos}, neg n={self.n_neg}): {ids}"
        )


def split_indices(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (selection, measurement) index arrays covering range(n), each sorted.

    round(fraction * n) indices (at least 1, at most n - 1) go to selection, chosen
    by a seeded permutation: the same (n, fraction, seed) always gives the same split.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be a whole number >= 2 to split into two non-empty parts, got {n!r}")
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction!r}")
    n_select = min(max(int(round(fraction * n)), 1), int(n) - 1)
    order = np.random.default_rng(seed).permutation(int(n))
    return np.sort(order[:n_select]), np.sort(order[n_select:])


def per_generation(feature_acts: Iterable[Any], reduce: Reduce = "max") -> np.ndarray:
    """One row per generation [G, F]: each generation's [T, F] feature activations reduced over tokens.

    `feature_acts` may be a lazy iterable (e.g. `(encode(sae, a) for a in residuals)`),
    so only one generation's token-level features are held at a time.
    """
    _check_reduce(reduce)
    rows = [_reduce_one(acts, reduce, i, None) for i, acts in enumerate(feature_acts)]
    if not rows:
        raise ValueError("no generations given")
    widths = {row.shape[0] for row in rows}
    if len(widths) > 1:
        raise ValueError(f"generations have different numbers of features: {sorted(widths)}")
    return np.stack(rows)


def feature_magnitudes(
    feature_acts: Iterable[Any], feature_ids: int | Sequence[int], reduce: Reduce = "max"
) -> np.ndarray:
    """Per generation, the magnitude of each feature in `feature_ids`, reduced over its tokens.

    A single id gives shape [G]; a sequence of ids gives [G, k] in the order given.
    """
    _check_reduce(reduce)
    single = isinstance(feature_ids, (int, np.integer))
    ids = [int(feature_ids)] if single else [int(i) for i in feature_ids]
    if not ids:
        raise ValueError("feature_ids is empty")
    rows = [_reduce_one(acts, reduce, i, ids) for i, acts in enumerate(feature_acts)]
    if not rows:
        raise ValueError("no generations given")
    out = np.stack(rows)
    return out[:, 0] if single else out


def select_features(
    pos: Any,
    neg: Any,
    *,
    top_k: int,
    method: str = "mean_difference",
    fdr_q: float | None = None,
) -> FeatureSelection:
    """The `top_k` features that fire most more in `pos` [N1, F] than in `neg` [N2, F] generations.

    The procedure of arXiv 2512.22293 §5 (pos: direct contexts, neg: safe ones): rank
    features by the difference of mean activation, pos minus neg; only features with a
    positive difference are eligible, so fewer than `top_k` may come back. Ties go to
    the lower id.

    fdr_q: first keep only features whose one-sided Mann-Whitney test (pos >
    neg, scipy `mannwhitneyu` over generations) survives Benjamini-Hochberg at
    false discovery rate q across all F features (statsmodels `multipletests`,
    "fdr_bh"). The paper filtered its candidates with Model-X knockoffs at q = 0.1;
    BH on per-feature p-values is a simpler FDR control (valid under independence
    or positive dependence of the tests), not the same procedure.

    Rows must be generations not used to measure the features afterwards
    (`split_indices`).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a whole number >= 1, got {top_k!r}")
    a, b = _as_matrix(pos, "pos"), _as_matrix(neg, "neg")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"pos has {a.shape[1]} features but neg has {b.shape[1]}: they must come from one SAE")
    score = a.mean(axis=0) - b.mean(axis=0)
    eligible = score > 0
    p_values = p_adjusted = None
    if fdr_q is not None:
        if not (isinstance(fdr_q, (int, float)) and 0 < fdr_q < 1):
            raise ValueError(f"fdr_q must lie strictly between 0 and 1, got {fdr_q!r}")
        p_values = mann_whitney_greater(a, b)
        from statsmodels.stats.multitest import multipletests

        p_adjusted = multipletests(p_values, alpha=fdr_q, method="fdr_bh")[1]
        eligible &= p_adjusted <= fdr_q
    candidates = np.flatnonzero(eligible)
    # stable sort on -score keeps ascending ids among ties
    ranked = candidates[np.argsort(-score[candidates], kind="stable")][: int(top_k)]
    return FeatureSelection(
        feature_ids=tuple(int(i) for i in ranked),
        scores=tuple(float(score[i]) for i in ranked),
        method=method,
        n_pos=a.shape[0],
        n_neg=b.shape[0],
        n_features=a.shape[1],
        n_candidates=int(candidates.size),
        fdr_q=None if fdr_q is None else float(fdr_q),
        p_values=None if p_values is None else tuple(float(p_values[i]) for i in ranked),
        p_adjusted=None if p_adjusted is None else tuple(float(p_adjusted[i]) for i in ranked),
    )


def mann_whitney_greater(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per column, the one-sided Mann-Whitney p-value that a's values tend to exceed b's.

    scipy `mannwhitneyu` vectorised over columns (normal approximation with tie
    correction; exact for small samples without ties, as scipy chooses). A column
    that is constant across both groups carries no evidence: p = 1.
    """
    from scipy.stats import mannwhitneyu

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    varying = np.ptp(np.vstack([a, b]), axis=0) > 0
    p = np.ones(a.shape[1])
    if varying.any():
        p[varying] = mannwhitneyu(a[:, varying], b[:, varying], alternative="greater", axis=0).pvalue
    return p


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _check_reduce(reduce: str) -> None:
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduce!r}")


def _reduce_one(acts: Any, reduce: str, index: int, ids: list[int] | None) -> np.ndarray:
    x = _to_numpy(acts)
    if x.ndim != 2:
        raise ValueError(f"generation {index}: feature activations must be [tokens, features], got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(
            f"generation {index} has no tokens, so it has no feature magnitude; drop empty generations first"
        )
    if ids is not None:
        bad = [i for i in ids if not 0 <= i < x.shape[1]]
        if bad:
            raise IndexError(f"feature ids {bad} do not exist: generation {index} has {x.shape[1]} features")
        x = x[:, ids]
    return x.max(axis=0) if reduce == "max" else x.mean(axis=0)


def _as_matrix(values: Any, what: str) -> np.ndarray:
    x = _to_numpy(values)
    if x.ndim != 2:
        raise ValueError(f"{what} must be [generations, features], got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 generations, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return x


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, without importing torch
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)
