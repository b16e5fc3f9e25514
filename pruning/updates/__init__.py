"""Updates: what happens to the weights a mask keeps (none, OBS reconstruction, DSnoT).

One file per update. Each takes a layer's weight, a mask (True = kept) and the statistics of the
layer's calibration inputs, and returns the new weight (OBS) or a new mask with the same count
per row (DSnoT).
"""
