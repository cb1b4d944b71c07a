"""Decision rules: measured data and a pre-registered rule -> a `claimkit.verdict.Decision`.

A rule knows shapes of claims, never a paper. A spec declares a claim's rule as parts
(`declaration`: what a part may say, light enough for spec validation), each of a shape
with its simulator: `share` (a ratio of arm effects in a region), `level` (every training
run reaches a share of outputs), `ordering` (rates fall in an order), `groups` (readings of
outputs per seed, combined across seeds). `parts` decides a claim from its parts with the
same evidence standard both ways; `declared` measures a spec's parts on a claim's data.
The first spec's rules on counts pooled over seeds were retired with it; its verdicts keep
their rules as records (fixtures/claims/archive/).
"""
