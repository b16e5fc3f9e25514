"""Criteria: which weights a one-shot method keeps, as pure score functions (higher = keep).

One file per criterion. Each takes a layer's (d_out, d_in) weight and the statistics of its
calibration inputs and returns one score per weight.
"""
