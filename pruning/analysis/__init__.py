"""Measuring what pruning did: evaluation, intervals, the sparsity ramp, layer sensitivity, stability over
draws, prediction flips, weight distributions."""
