"""Claims of "Emergent Misalignment is Easy, Narrow Misalignment is Hard" (arXiv 2602.07852), one test module per scan claim."""
