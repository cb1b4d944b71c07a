"""Claims of "Learning from Negative Examples: Why Warning-Framed Training Data Teaches
What It Warns Against" (Enkhbayar, arXiv 2512.22293).

`conditions` builds the paper's training conditions (L0, L1, L2, L3, control, baseline)
and its held-out evaluation prompts from the organism corpus templates.
"""
