"""Decision rules: data and a pre-registered rule -> a `claimkit.verdict.Decision`.

A rule knows shapes of claims, never a paper. `pooled` holds the first spec's rules
on counts pooled over seeds; the shapes beside it decide over training seeds x
prompts (`claimkit.crossed`) or over per-seed estimates, each with its simulation.
"""

from claimkit.rules.pooled import (  # noqa: F401  (the first spec's rules, kept while its claims use them)
    CapabilityCheck,
    Counts,
    PooledCounts,
    ablation_fails_retraining_works,
    confidence_at_least,
    decide_per_seed_if_heterogeneous,
    drop_into_bands,
    equivalent_and_above,
    expected_effects,
    lower_than,
    ordered_decreasing,
    pool_seeds,
    proportion_at_least,
    ratio_equivalent_and_separated,
)
