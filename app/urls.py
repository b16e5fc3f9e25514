"""Shareable views: the sidebar's main settings live in the page URL.

``/weights?method=wanda&sparsity=0.7`` opens the Weights view with Wanda at 70%. The URL is
read once, when a browser session starts (before the sidebar's widgets are drawn), and then
follows the sidebar on every run, so copying the address bar shares the view. A value the app
cannot use is named in a message and the default is kept.
"""

from __future__ import annotations

import streamlit as st

from . import state

URL_KEYS = ("model", "method", "granularity", "sparsity", "calibration", "seed", "update")
READ_FLAG = "ps_url_read"
PROBLEMS = "ps_url_problems"


def _method(value: str) -> dict:
    from pruning.registry import get_method

    return {"ps_method": get_method(value).name}


def _update(value: str) -> dict:
    from pruning.updates.registry import get_update

    return {"ps_update": state.UPDATE_DEFAULT if value == state.UPDATE_DEFAULT else get_update(value).name}


def _granularity(value: str) -> dict:
    from pruning.masks import parse_granularity

    g = str(parse_granularity(value))
    return {"ps_granularity": g} if g in state.GRANULARITIES else {"ps_granularity": state.CUSTOM_NM, "ps_custom_nm": g}


def _sparsity(value: str) -> dict:
    x = float(value)
    if not state.SPARSITY_MIN <= x <= state.SPARSITY_MAX:
        raise ValueError(f"must be between {state.SPARSITY_MIN} and {state.SPARSITY_MAX}")
    steps = round((x - state.SPARSITY_MIN) / state.SPARSITY_STEP)
    return {"ps_sparsity": round(state.SPARSITY_MIN + steps * state.SPARSITY_STEP, 4)}


def _model(value: str) -> dict:
    if value in state.model_choices():
        return {"ps_model_choice": value}
    return {"ps_model_choice": state.OTHER_MODEL, "ps_model_text": value}


def _int_between(key: str, lo: int, hi: int):
    def parse(value: str) -> dict:
        n = int(value)
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return {key: n}

    return parse


PARSERS = {
    "model": _model,
    "method": _method,
    "granularity": _granularity,
    "sparsity": _sparsity,
    "calibration": _int_between("ps_calibration", 1, 1024),
    "seed": _int_between("ps_seed", 0, 2**31 - 1),
    "update": _update,
}


def settings_from_url(params) -> tuple[dict, list[str]]:
    """Session-state values for the URL's settings, and one message per value that cannot be used."""
    values, problems = {}, []
    for key in URL_KEYS:
        if key not in params:
            continue
        raw = str(params[key])
        try:
            values.update(PARSERS[key](raw))
        except Exception as exc:  # noqa: BLE001 - any bad value becomes a message, never a traceback
            problems.append(f"{key}={raw!r} in the address cannot be used ({exc}); the default is kept.")
    return values, problems


def read_once() -> None:
    """Put the URL's settings into session state at the start of a browser session."""
    if st.session_state.get(READ_FLAG):
        return
    st.session_state[READ_FLAG] = True
    values, problems = settings_from_url(st.query_params)
    st.session_state.update(values)
    st.session_state[PROBLEMS] = problems


def url_of(s: state.Settings) -> dict:
    """The URL parameters that reproduce these settings."""
    return {
        "model": s.model,
        "method": s.method,
        "granularity": s.granularity,
        "sparsity": f"{s.sparsity:g}",
        "calibration": str(s.calibration),
        "seed": str(s.seed),
        "update": s.update,
    }


def write(s: state.Settings) -> None:
    """Make the address bar show the current settings (only when they changed)."""
    wanted = url_of(s)
    if any(st.query_params.get(k) != v for k, v in wanted.items()):
        st.query_params.update(wanted)
