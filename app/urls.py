"""Shareable views: every setting that changes what is shown lives in the page URL.

``/weights?method=wanda&sparsity=0.7&layer=...`` opens the Weights view with Wanda at 70% on that
layer. The URL is read once, when a browser session starts (before the sidebar's widgets are
drawn), and then follows the session on every run, so copying the address bar shares the view:

- the sidebar: model, dataset (``data=hub:NAME`` or ``data=file:PATH``, its columns), method, its
  parameters that differ from their defaults (``p.<name>``), granularity, sparsity, calibration,
  evaluation size, seed;
- an opened run by its name under the runs directory (``run=<name>``), never an absolute path;
- the views' own settings (:data:`PAGE_KEYS`: the layer, the score picture's criterion, ...).

A value the app refuses is named in one message, dropped from the address, and the default shown:
the sidebar's values are checked here (alone, and then together as one request); the views' own
values are checked by their widgets, which fall back to their default, and the address is then
written from what the widgets hold.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from . import state

SIDEBAR_KEYS = ("model", "data", "text_column", "label_column", "method", "granularity", "sparsity", "calibration", "eval", "seed", "update", "numerics")
RUN_KEY = "run"
PARAM_PREFIX = "p."
READ_FLAG = "ps_url_read"
PROBLEMS = "ps_url_problems"
FROM_URL = "ps_url_model"  # the model was named by the address (dropped again if it cannot be loaded)


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v not in ("true", "false", "1", "0"):
        raise ValueError("must be true or false")
    return v in ("true", "1")


def _list(value: str) -> list[str]:
    return [x for x in value.split(",") if x]


def _bic_or_int(value: str):
    return value if value == "bic" else int(value)


def _ints(value: str) -> list[int]:
    return [int(x) for x in _list(value)]


# The views' own settings: URL name -> (session-state key, parser). Their widgets check the values.
PAGE_KEYS = {
    "layer": ("ps_layer", str),
    "count_scale": ("ps_weights_scale", str),
    "hide_zeros": ("ps_weights_hide", _bool),
    "components": ("ps_weights_k", _bic_or_int),
    "criterion": ("ps_weights_score_method", str),
    "score_picture": ("ps_weights_score_on", _bool),
    "all_layers": ("ps_weights_grid", _bool),
    "mask_view": ("ps_masks_view", str),
    "compare": ("ps_masks_methods", _list),
    "disagree_a": ("ps_masks_a", str),
    "disagree_b": ("ps_masks_b", str),
    "overview_methods": ("ps_overview_methods", _list),
    "sens_method": ("ps_sens_method", str),
    "sens_sparsities": ("ps_sens_sparsities", str),
    "sens_signal": ("ps_sens_signal", str),
    "sens_at": ("ps_sens_at", float),
    "sens_blocks": ("ps_sens_blocks", _ints),
    "sens_roles": ("ps_sens_roles", _list),
    "sens_eval": ("ps_sens_eval", int),
    "ramp_methods": ("ps_ramp_methods", _list),
    "ramp_granularities": ("ps_ramp_grans", _list),
    "ramp_sparsities": ("ps_ramp_sparsities", str),
    "cand_base": ("ps_cand_base", str),
    "cand_randomness": ("ps_cand_r", float),
    "cand_k": ("ps_cand_k", int),
    "cand_power": ("ps_cand_a", float),
    "cand_seed": ("ps_cand_seed", int),
    "cand_holdout": ("ps_cand_holdout", int),
    "cmp_criteria": ("ps_cmp_criteria", _list),
    "cmp_updates": ("ps_cmp_updates", _list),
    "cmp_allocations": ("ps_cmp_allocations", _list),
    "cmp_reference": ("ps_cmp_reference", str),
    "steps_k": ("ps_steps_k", int),
    "stab_methods": ("ps_stab_methods", _list),
    "stab_draws": ("ps_stab_draws", int),
    "stab_kind": ("ps_stab_kind", str),
    "learn_pattern": ("ps_learn_pattern", str),
    "learn_criterion": ("ps_learn_criterion", str),
    "learn_seed": ("ps_learn_seed", int),
}


def _method(value: str) -> dict:
    from pruning.catalog import get_method

    return {"ps_method": get_method(value).name}


def _update(value: str) -> dict:
    from pruning.updates.registry import get_update

    return {"ps_update": state.UPDATE_DEFAULT if value == state.UPDATE_DEFAULT else get_update(value).name}


def _numerics(value: str) -> dict:
    from pruning.calibration import NUMERICS

    if value not in NUMERICS:
        raise ValueError(f"must be {' or '.join(NUMERICS)}")
    return {"ps_numerics": value}


def _granularity(value: str) -> dict:
    from pruning.masks import parse_granularity

    from .allocation import ALLOCATED

    if value.strip() == ALLOCATED:  # the CLI's reason would point to --allocation FILE.json
        raise ValueError(
            "a link does not carry an applied allocation, which lives in the session that measured it: open Layer "
            "sensitivity (its settings are in this link; on the same server the measurement is cached) and press Apply, "
            "or open a saved run"
        )
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
    return {"ps_model_choice": state.OTHER_MODEL, "ps_model_text": value, FROM_URL: True}


def _data(value: str) -> dict:
    kind, _, where = value.partition(":")
    kinds = {"hub": state.DATA_HUB, "file": state.DATA_PATH}
    if kind not in kinds or not where.strip():
        raise ValueError("must be hub:<dataset name> or file:<path>")
    return {"ps_data_choice": kinds[kind], "ps_data_text": where.strip()}


def _int_between(key: str, lo: int, hi: int):
    def parse(value: str) -> dict:
        n = int(value)
        if not lo <= n <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return {key: n}

    return parse


PARSERS = {
    "model": _model,
    "data": _data,
    "text_column": lambda v: {"ps_text_column": v},
    "label_column": lambda v: {"ps_label_column": v},
    "method": _method,
    "granularity": _granularity,
    "sparsity": _sparsity,
    "calibration": _int_between("ps_calibration", 1, 1024),
    "eval": _int_between("ps_eval_size", 8, 20000),
    "seed": _int_between("ps_seed", 0, 2**63 - 1),  # as the CLI's --seed
    "update": _update,
    "numerics": _numerics,
}


def _message(key: str, raw: str, why) -> str:
    return f"{key}={raw!r} in the address cannot be used ({why}); it was dropped and the default is shown."


def _params(params, method: str, problems: list) -> dict:
    """The ``p.<name>`` values for ``method``'s parameters (each checked by the registry)."""
    from pruning.catalog import get_method

    try:
        spec = get_method(method)
    except Exception:  # noqa: BLE001 - an unknown method has no parameters
        spec = None
    values = {}
    for key in params:
        if not str(key).startswith(PARAM_PREFIX):
            continue
        name, raw = str(key)[len(PARAM_PREFIX):], str(params[key])
        try:
            if spec is None or name not in spec.params:
                raise ValueError(f"{method} has no parameter {name}")
            values[state.param_key(method, name)] = spec.params[name].coerce(name, raw)
        except Exception as exc:  # noqa: BLE001
            problems.append(_message(key, raw, exc))
    return values


def _run(raw: str) -> str:
    """The method value of the run named ``raw`` under the runs directory (checked, remembered in the session)."""
    from pruning.store.runs import REPORT_FILE, runs_dir

    from . import runs

    root = runs_dir().resolve()
    folder = (root / raw).resolve()
    if Path(raw).is_absolute() or root not in folder.parents or not (folder / REPORT_FILE).is_file():
        raise ValueError(f"no run of that name under the runs directory {root}")
    return runs.remember(folder)


def _together(values: dict, problems: list, raw: dict) -> None:
    """Drop the sidebar values that cannot make one request together (granularity, then parameters)."""
    from pruning.request import PruneRequest

    def attempt() -> Exception | None:
        merged = {**state.DEFAULTS, **{k: v for k, v in st.session_state.items() if k in state.DEFAULTS}, **values}
        g = merged["ps_custom_nm"] if merged["ps_granularity"] == state.CUSTOM_NM else merged["ps_granularity"]
        method = merged["ps_method"]
        prefix = state.param_key(method, "")
        params = {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}
        try:
            PruneRequest.make(method, merged["ps_sparsity"], g, params, seed=merged["ps_seed"])
        except Exception as exc:  # noqa: BLE001
            return exc
        return None

    for key, drops in (("granularity", ("ps_granularity", "ps_custom_nm")), ("params", None)):
        exc = attempt()
        if exc is None:
            return
        if drops is None:
            gone = [k for k in values if k.startswith("ps_param_")]
            for k in gone:
                values.pop(k)
            if gone:
                problems.append(_message("p.*", ", ".join(f"{k}={v}" for k, v in raw.items() if k.startswith(PARAM_PREFIX)), exc))
        elif any(k in values for k in drops):
            for k in drops:
                values.pop(k, None)
            problems.append(_message(key, raw.get(key, ""), exc))


def settings_from_url(params) -> tuple[dict, list[str]]:
    """Session-state values for the URL's settings, and one message per value that cannot be used."""
    values, problems = {}, []
    raw = {str(k): str(params[k]) for k in params}
    for key in SIDEBAR_KEYS:
        if key not in raw:
            continue
        try:
            values.update(PARSERS[key](raw[key]))
        except Exception as exc:  # noqa: BLE001 - any bad value becomes a message, never a traceback
            problems.append(_message(key, raw[key], exc))
    if RUN_KEY in raw:
        try:
            values["ps_method"] = _run(raw[RUN_KEY])
        except Exception as exc:  # noqa: BLE001
            problems.append(_message(RUN_KEY, raw[RUN_KEY], exc))
    method = values.get("ps_method", st.session_state.get("ps_method", state.DEFAULTS["ps_method"]))
    from .runs import is_run

    if not is_run(method):
        values.update(_params(raw, method, problems))
        _together(values, problems, raw)
    for key, (session_key, parse) in PAGE_KEYS.items():
        if key in raw:
            try:
                values[session_key] = parse(raw[key])
            except Exception as exc:  # noqa: BLE001
                problems.append(_message(key, raw[key], exc))
    return values, problems


def read_once() -> None:
    """Put the URL's settings into session state at the start of a browser session."""
    if st.session_state.get(READ_FLAG):
        return
    st.session_state[READ_FLAG] = True
    values, problems = settings_from_url(st.query_params)
    st.session_state.update(values)
    st.session_state[PROBLEMS] = problems


REFUSED_MODEL = "url_model_refused"  # why the address's model did not load, until the next run's sidebar drops it


def refuse_model(why: str) -> None:
    """The model the address named cannot be loaded: the next run (``st.rerun``) goes back to the default model and
    says why in the sidebar (its widgets are drawn already in this run, so they cannot change now)."""
    st.session_state.pop(FROM_URL, None)
    st.session_state[REFUSED_MODEL] = why


def apply_refusals() -> None:
    """Before the sidebar's widgets: drop a model the address named that did not load."""
    why = st.session_state.pop(REFUSED_MODEL, None)
    if why is None:
        return
    raw = st.session_state.get("ps_model_text", "")
    st.session_state["ps_model_choice"] = state.model_choices()[0]
    st.session_state["ps_model_text"] = ""
    st.session_state[PROBLEMS] = list(st.session_state.get(PROBLEMS, [])) + [_message("model", raw, why)]


def _run_name(method: str) -> str | None:
    """An opened run's name under the runs directory (None when it lies elsewhere: then no link can name it)."""
    from pruning.store.runs import runs_dir

    from .runs import folder_of

    folder, root = folder_of(method).resolve(), runs_dir().resolve()
    return folder.relative_to(root).as_posix() if root in folder.parents else None


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def url_of(s: state.Settings) -> dict:
    """The URL parameters that reproduce these settings (and the views' own settings in this session)."""
    from .runs import is_run

    out = {"model": s.model}
    if s.data_kind in (state.DATA_HUB, state.DATA_PATH) and s.data_source:
        out["data"] = ("hub:" if s.data_kind == state.DATA_HUB else "file:") + s.data_source
        if s.text_column:
            out["text_column"] = s.text_column
        if s.label_column:
            out["label_column"] = s.label_column
    if is_run(s.method):
        name = _run_name(s.method)
        if name is not None:
            out[RUN_KEY] = name
    else:
        out["method"] = s.method
        out.update({PARAM_PREFIX + k: _text(v) for k, v in s.params})
    out.update(granularity=s.granularity, sparsity=f"{s.sparsity:g}", calibration=str(s.calibration), eval=str(s.eval_size), seed=str(s.seed), update=s.update)
    if s.numerics != "fast":  # the default stays out of the address
        out["numerics"] = s.numerics
    for key, (session_key, _) in PAGE_KEYS.items():
        if session_key in st.session_state and st.session_state[session_key] is not None:
            out[key] = _text(st.session_state[session_key])
    return out


def write(s: state.Settings) -> None:
    """Make the address bar show the current settings (only when they changed); anything else in it is dropped."""
    wanted = url_of(s)
    current = {str(k): str(st.query_params[k]) for k in st.query_params}
    if current != wanted:
        st.query_params.from_dict(wanted)
