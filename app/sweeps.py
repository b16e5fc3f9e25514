"""Shared input parsing of the long-running views (sparsity ramp, layer sensitivity)."""

from __future__ import annotations

import math

from pruning.errors import PruneScopeError


def parse_sparsities(text: str) -> list[float]:
    """``"0.3, 0.5, 70%"`` -> ``[0.3, 0.5, 0.7]``; an impossible sparsity is a clear error."""
    values = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            v = float(part[:-1]) / 100 if part.endswith("%") else float(part)
        except ValueError:
            raise PruneScopeError(f"{part!r} is not a sparsity: give numbers between 0 and 1 such as 0.3, 0.5, 0.7") from None
        if math.isnan(v) or not 0.0 <= v < 1.0:
            raise PruneScopeError(
                f"sparsity {part} is impossible: it must be at least 0 and below 1 (0.5 removes half the weights; 1 would remove them all)"
            )
        values.append(round(v, 6))
    if not values:
        raise PruneScopeError("give at least one sparsity, such as 0.5")
    return sorted(dict.fromkeys(values))

