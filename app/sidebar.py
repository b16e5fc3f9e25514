"""The sidebar: model, dataset, method, granularity, sparsity, calibration, evaluation size, seed.

It is drawn by ``app/main.py`` on every run, before the page, so its widgets
(and their ``ps_*`` session-state keys) persist while the user moves between
pages. It never loads anything: pages do, through ``app.resources``.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from pruning.errors import PruneScopeError

from . import runs, state, text, urls
from .allocation import ALLOCATED, PENDING_KEY, SOURCE_KEY
from .state import CUSTOM_NM, DATA_CHOICES, DATA_HUB, DATA_PATH, DATA_UPLOAD, GRANULARITIES, OTHER_MODEL
from .style import method_color

MODEL_HELP = {
    "minilm-rt": "all-MiniLM-L6 (22M parameters) fine-tuned on Rotten Tomatoes snippets on first use; metric: accuracy",
    "smollm2-135m": "SmolLM2-135M-Instruct (from the embedded GGUF file); metric: perplexity",
}


ALLOCATED_LABEL = "allocated (per-layer sparsity from Layer sensitivity)"

NOT_ASSIGNABLE = {"ps_upload"}  # widgets whose value cannot be set through session state


def _keep_valid(key: str, options) -> None:
    """A stored choice that is no longer offered falls back to the first option."""
    if st.session_state.get(key) not in options:
        st.session_state[key] = options[0]


def _save_upload(upload) -> str:
    """Write an uploaded file to a content-addressed temporary path and return it."""
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "prunescope-uploads" / digest
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / Path(upload.name).name
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def _method_options() -> tuple[list[str], dict]:
    from pruning.catalog import all_methods  # a registry that fails to load is a bug, shown with its traceback

    methods = all_methods()
    return list(methods), methods


def param_widgets(method) -> None:
    """One widget per registry parameter of ``method`` (keys ``ps_param_<method>_<name>``): the short
    "budget" group first, the "advanced" rest behind a toggle."""
    budget = {n: p for n, p in method.params.items() if p.group == "budget"}
    advanced = {n: p for n, p in method.params.items() if p.group != "budget"}
    if budget:
        st.caption("Budget: how long a run takes")
        for name, param in budget.items():
            _param_widget(method, name, param)
    if advanced and (not budget or st.toggle(f"Advanced ({len(advanced)} more)", key=f"ps_param_adv_{method.name}")):
        for name, param in advanced.items():
            _param_widget(method, name, param)
    st.button("Reset to defaults", key=f"btn_param_reset_{method.name}", on_click=_reset_params, args=(method,))


def _param_widget(method, name: str, param) -> None:
    key = state.param_key(method.name, name)
    if key not in st.session_state:
        st.session_state[key] = param.default
    label, help_text = name, param.help
    if param.options is not None:
        st.selectbox(label, list(param.options), key=key, help=help_text)
    elif isinstance(param.default, bool):
        st.checkbox(label, key=key, help=help_text)
    elif isinstance(param.default, int):
        lo = None if param.minimum is None else int(param.minimum)
        hi = None if param.maximum is None else int(param.maximum)
        st.number_input(label, min_value=lo, max_value=hi, step=1, key=key, help=help_text)
    elif isinstance(param.default, float):
        small = 0 < abs(param.default) < 1e-3
        st.number_input(
            label,
            min_value=None if param.minimum is None else float(param.minimum),
            max_value=None if param.maximum is None else float(param.maximum),
            step=abs(param.default) / 10 if param.default else 0.01,
            format="%.2e" if small else "%.4g",
            key=key,
            help=help_text,
        )
    else:
        st.text_input(label, key=key, help=help_text)


def _reset_params(method) -> None:
    for name, param in method.params.items():
        st.session_state[state.param_key(method.name, name)] = param.default


SEED_TEXT, SEED_SHOWN, SEED_PROBLEM = "ps_seed_text", "_ps_seed_shown", "_ps_seed_problem"


def _take_seed() -> None:
    """The typed seed becomes ``ps_seed`` when it is a whole number in [0, 2**63-1] (like the CLI's);
    otherwise the seed stays and the sidebar says why."""
    from pruning.request import validate_seed

    try:
        value = validate_seed(st.session_state[SEED_TEXT])
    except PruneScopeError as exc:
        st.session_state[SEED_PROBLEM] = f"{exc}; the seed stays {st.session_state['ps_seed']}"
        return
    st.session_state.update({"ps_seed": value, SEED_SHOWN: value, SEED_PROBLEM: None})


def seed_section(sb) -> None:
    """The seed as text: a number box cannot hold every seed the CLI takes (JavaScript numbers stop at 2**53)."""
    if st.session_state.get(SEED_SHOWN) != st.session_state["ps_seed"] or SEED_TEXT not in st.session_state:
        st.session_state[SEED_TEXT] = str(st.session_state["ps_seed"])  # set elsewhere (the address): shown here
        st.session_state[SEED_SHOWN] = st.session_state["ps_seed"]
    sb.text_input("Seed", key=SEED_TEXT, on_change=_take_seed, help="A whole number from 0 to 2**63-1, as in the CLI's --seed.")
    if st.session_state.get(SEED_PROBLEM):
        sb.error(text.md(st.session_state[SEED_PROBLEM]))


def render() -> state.Settings:
    """Draw the sidebar and return this session's settings (with their validated ``request``)."""
    urls.read_once()
    urls.apply_refusals()
    state.init_defaults()
    sb = st.sidebar
    sb.markdown("### Settings")
    for problem in st.session_state.get(urls.PROBLEMS, []):
        sb.warning(text.md(problem))  # it quotes the address's value: shown as text, never as Markdown
    model_section(sb)
    data_section(sb)
    method_section(sb)
    sparsity_section(sb)
    c1, c2 = sb.columns(2)
    c1.number_input("Calibration samples", min_value=1, max_value=1024, step=8, key="ps_calibration", help="Sentences or text windows for Wanda and SparseGPT statistics.")
    c2.number_input("Evaluation size", min_value=8, max_value=20000, step=64, key="ps_eval_size", help="Examples (classification) or text windows (perplexity) per evaluation.")
    seed_section(sb)
    device_section(sb)
    settings = state.current()
    urls.write(settings)
    try:
        request = settings.request
    except PruneScopeError as exc:  # shown here, and by every page that needs the request
        sb.error(text.md(exc))
    else:
        if request.granularity.is_nm:
            sb.caption(f"An N:M pattern fixes the sparsity at N/M; the slider is ignored for {request.granularity}.")
    return settings


def device_section(sb) -> None:
    from pruning.loading.devices import available_devices

    devices = ["auto"] + available_devices()
    _keep_valid("ps_device", devices)
    sb.selectbox("Device", devices, key="ps_device", help="Where pruning and evaluation run (auto: the GPU when there is one). "
                 "The model stays in host memory; one block at a time goes to the device.")


def model_section(sb) -> None:
    models = state.model_choices()
    _keep_valid("ps_model_choice", models)
    sb.selectbox(
        "Model",
        models,
        key="ps_model_choice",
        help="The two embedded defaults need no download. Other: a hub name (needs internet), "
        "a local folder saved with save_pretrained, or a .gguf file.",
    )
    choice = st.session_state["ps_model_choice"]
    if choice in MODEL_HELP:
        sb.caption(MODEL_HELP[choice])
    if choice == OTHER_MODEL:
        sb.text_input("Hub name, local folder or .gguf file", key="ps_model_text", placeholder="prajjwal1/bert-tiny or /path/to/folder")
        sb.text_input("GGUF file inside that hub repo (optional)", key="ps_gguf_file")


def data_section(sb) -> None:
    _keep_valid("ps_data_choice", list(DATA_CHOICES))
    sb.selectbox(
        "Dataset",
        DATA_CHOICES,
        key="ps_data_choice",
        help="Embedded: Rotten Tomatoes snippets for classifiers, Rotten Tomatoes plot summaries for language models.",
    )
    kind = st.session_state["ps_data_choice"]
    if kind == DATA_PATH:
        sb.text_input("CSV / TSV / JSONL file, text file or folder", key="ps_data_text", placeholder="/path/to/data.csv")
    elif kind == DATA_HUB:
        sb.text_input("Hub dataset name", key="ps_data_text", placeholder="glue/sst2")
    elif kind == DATA_UPLOAD:
        upload = sb.file_uploader("CSV, TSV, JSONL or text file", type=["csv", "tsv", "jsonl", "json", "txt", "raw"], key="ps_upload")
        st.session_state["ps_upload_path"] = _save_upload(upload) if upload is not None else ""
    if kind != state.DATA_EMBEDDED:
        with sb.expander("Columns (found automatically when left empty)"):
            st.text_input("Text column", key="ps_text_column")
            st.text_input("Label column", key="ps_label_column")


def choose_method(name: str) -> None:
    """Make ``name`` the session's method, with its paper's granularity (the user may change it after)."""
    st.session_state["ps_method"] = name
    _paper_granularity()


def _paper_granularity() -> None:
    """Set the granularity to the chosen method's paper default (on a method change)."""
    try:
        from pruning.masks import parse_granularity
        from pruning.catalog import get_method

        g = get_method(st.session_state["ps_method"]).default_granularity
    except PruneScopeError:
        return
    if g in GRANULARITIES:
        st.session_state["ps_granularity"] = g
    elif parse_granularity(g).is_nm:
        st.session_state["ps_granularity"], st.session_state["ps_custom_nm"] = CUSTOM_NM, g


def method_section(sb) -> None:
    names, methods = _method_options()
    names += runs.opened()  # run folders opened in the Runs view
    _keep_valid("ps_method", names)
    sb.selectbox(
        "Method",
        names,
        key="ps_method",
        on_change=_paper_granularity,
        format_func=lambda n: methods[n].label if n in methods else runs.label(n) if runs.is_run(n) else n,
        help=f"Score-based methods ({', '.join(m.label for m in methods.values() if m.score_based)}) re-threshold cached scores "
        "as the slider moves; the others prune again for each setting. Choosing a method sets the granularity its paper uses.",
    )
    method = methods.get(st.session_state["ps_method"])
    if method is not None:
        if runs.is_run(method.name):
            sb.caption(text.md(method.summary))  # a run's names its folder and report
        else:  # the method's colour in every chart, beside what it does
            sb.caption(f'<span style="color:{method_color(method.name)}">&#9632;</span> {method.summary}', unsafe_allow_html=True)
        if method.params or method.needs_calibration:
            with sb.expander(f"Parameters of {method.name}"):
                param_widgets(method)
                if method.needs_calibration:
                    numerics_select()
        if method.takes_update:
            update_select(sb, method)


def numerics_select() -> None:
    """The calibration arithmetic of the block walk (PruneRequest.numerics)."""
    from pruning.calibration import NUMERICS

    _keep_valid("ps_numerics", list(NUMERICS))
    st.selectbox(
        "Numerics",
        list(NUMERICS),
        key="ps_numerics",
        help="fast: all calibration samples through a block at once, exact counts. reference: the published Wanda/"
        "SparseGPT code's arithmetic (one sample per pass, its running averages, SparseGPT's per-block rule), "
        "slower; it runs the method itself rather than the slider's cached scores.",
    )


def update_select(sb, method) -> None:
    """What happens to the weights the mask keeps (the registry of updates; "default": the method's own)."""
    from pruning.updates.registry import all_updates

    updates = all_updates()
    options = [state.UPDATE_DEFAULT] + list(updates)
    _keep_valid("ps_update", options)
    own = own_update(method)
    sb.selectbox(
        "Update",
        options,
        key="ps_update",
        format_func=lambda u: f"the method's own ({own})" if u == state.UPDATE_DEFAULT else updates[u].label,
        help="What happens to the kept weights: none, OBS (SparseGPT's reconstruction on this mask) or DSnoT "
        "(prune-and-grow on the attention matrices, same count per row). Any update other than none runs the method itself, not the slider's cached scores.",
    )


def own_update(method) -> str:
    """The update ``method`` gets when none is chosen, for the parameters its widgets hold now (SDS: its base's own)."""
    try:
        return method.update_for(method.resolve_params(dict(state.method_params(method.name))))
    except PruneScopeError:  # a widget value the request will reject with its own message: the defaults' update
        return method.own_update


def allocated_label(source) -> str:
    """The select's words for an applied allocation: where it came from."""
    return ALLOCATED_LABEL if source is None else f"allocated (per-layer sparsity from {source.label})"


def back_to_uniform() -> None:
    """Leave an applied allocation: one sparsity for every layer (granularity "layer"); the allocation stays offered."""
    st.session_state["ps_granularity"] = "layer"


def sparsity_section(sb) -> None:
    from pruning.masks import granularity_labels

    labels = granularity_labels()

    pending = st.session_state.pop(PENDING_KEY, None)
    if pending is not None:  # measured by a page during the last run (OWL): applied before the select is drawn
        st.session_state[SOURCE_KEY], st.session_state["ps_granularity"] = pending, ALLOCATED
    source = st.session_state.get(SOURCE_KEY)
    grans = list(GRANULARITIES) + [CUSTOM_NM] + ([ALLOCATED] if source is not None else [])
    _keep_valid("ps_granularity", grans)
    sb.selectbox(
        "Granularity",
        grans,
        key="ps_granularity",
        format_func=lambda g: allocated_label(source) if g == ALLOCATED else labels.get(g, "custom N:M pattern (type it below)"),
        help="'allocated' appears once an allocation is applied on the Layer sensitivity page (the one its measurement "
        "builds, or one measured in one pass such as OWL).",
    )
    if st.session_state["ps_granularity"] == ALLOCATED:
        problem = source.mismatch(state.current().model_key)
        if problem:
            sb.warning(problem)
            sb.button("Back to uniform pruning", key="btn_alloc_uniform_side", on_click=back_to_uniform)
        else:
            sb.caption(f"Each layer at its own sparsity, {source.describe()}; rebuilt for the target sparsity below.")
    if st.session_state["ps_granularity"] == CUSTOM_NM:
        sb.text_input("N:M pattern (N pruned of every M inputs)", key="ps_custom_nm")
    sb.slider(
        "Target sparsity",
        min_value=state.SPARSITY_MIN,
        max_value=state.SPARSITY_MAX,
        step=state.SPARSITY_STEP,
        key="ps_sparsity",
        format="%.2f",
        help="Fraction of the targeted weights set to zero. N:M patterns fix it at N/M.",
    )
