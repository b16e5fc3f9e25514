"""The update "none": the kept weights stay as they are (magnitude, Wanda and RIA as published)."""

from __future__ import annotations

from .registry import Update, register_update


def _apply(weight, keep, stats, env):
    return None, keep


register_update(
    Update(
        name="none",
        label="None",
        summary="The kept weights stay as they are; only the mask changes the layer.",
        apply=_apply,
        needs_calibration=False,
    )
)
