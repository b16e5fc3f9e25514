"""Allocations: how many weights each layer keeps, given a target sparsity.

One file per allocation that needs more than a threshold rule (per layer, per row, global and
N:M live in ``pruning.masks.Granularity``).
"""
