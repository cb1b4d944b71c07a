"""The claim suites: one package per paper, each a set of pytest modules (one per claim)."""
