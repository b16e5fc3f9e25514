"""Small UI helpers shared by the pages: the opening every page shares, error handling in place, the Run
button and job following of the slow views, links and layer pickers."""

from __future__ import annotations

import os
import traceback
from typing import Callable

import streamlit as st

from pruning.errors import PruneScopeError
from pruning.store.integrity import NOT_BUILT

from . import jobs, resources, sidebar, state, text
from .charts.common import served


def guarded(body: Callable[[], None]) -> None:
    """Run a page body; bad input shows ``st.error`` in place and the rest of the app keeps working."""
    try:
        profile_to = os.environ.get("PRUNESCOPE_PROFILE")
        if profile_to:  # developer aid: cProfile of each page run, appended as text
            _profiled(body, profile_to)
        else:
            body()
    except jobs.NotStarted as exc:
        start_button(exc)
    except jobs.Stopped as exc:
        st.info(f"{text.md(exc)} Press Run to start it again.")
    except PruneScopeError as exc:
        st.error(text.md(exc))  # it may quote a path, a column or an address value: text, never Markdown
    except ImportError:  # a module that does not import is a bug (every runtime package is in requirements.txt): Streamlit
        raise  # shows it with its traceback. The one optional package, `datasets` (hub data), is named by pruning/loading/data.py's own error.
    except Exception as exc:  # noqa: BLE001 - a clear message instead of a traceback, details folded away
        st.error(f"Something went wrong: {type(exc).__name__}: {text.md(exc)}")
        with st.expander("Details"):
            st.code("".join(traceback.format_exception(exc)), language="text")


def start_button(exc: jobs.NotStarted) -> None:
    """Say what a slow method will do and offer to run it (its parameters are in the sidebar); for
    anything else this session stopped, offer to run it again."""
    m = exc.method
    if m is None:
        st.info(f"**{exc.label}** was stopped. It starts again only when you ask.")
        st.button("Run again", type="primary", key=f"btn_restart_{exc.kind}", on_click=exc.start)
        return
    budget = ", ".join(f"{k}={v}" for k, v in exc.params.items()) or "its default budget"
    st.info(
        f"**{m.label}** {'trains a copy of the model' if m.needs_training_data else 'runs several passes over the model'}: "
        f"minutes on a small CPU, so it starts only when you ask. It will run with {budget}; change that under "
        f"**Parameters of {m.name}** in the sidebar first if you like. The run goes on in the background if you "
        "leave this page, and its result is shared with every page and session at the same settings."
    )
    if m.needs_training_data and exc.model_size > 50_000_000:
        st.warning(
            f"This model has {exc.model_size / 1e6:.0f}M parameters: a training step costs many times one on minilm-rt (22M). "
            "On 2 CPU cores SmolLM2-135M takes about 8 s a step, so MGPP's default 200 steps run for about half an hour. "
            "Lower **steps** first for a quick look; the progress bar shows the time left once the run has started."
        )
    st.button(f"Run {m.label}", type="primary", key=f"btn_start_{m.name}", on_click=exc.start)


def default(key: str, value):
    """Give a page widget its first value through session state (so it also persists across pages)."""
    if key not in st.session_state:
        st.session_state[key] = value
    return st.session_state[key]


def _profiled(body, path: str) -> None:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    try:
        body()
    finally:
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
        with open(path, "a") as fh:
            fh.write(out.getvalue())


def settings() -> state.Settings:
    """This session's settings (the sidebar has been drawn by main.py; tests may run a page alone)."""
    if "ps_method" not in st.session_state:
        sidebar.render()
    return state.current()


def opening(title: str, intro: str = "", extra: str = ""):
    """What a page about the loaded model starts with: its title and introduction, this session's
    settings, the loaded model (loading it, or raising the error ``guarded`` shows) and the line of
    settings that produced the numbers below. Returns ``(settings, loaded)``."""
    st.title(title)
    if intro:
        st.markdown(intro)
    s = settings()
    foreign_allocation(s)
    loaded = _loaded(s)
    settings_line(s, loaded, extra)
    rebuilt = loaded.info.get("rebuilt")
    if rebuilt and rebuilt != NOT_BUILT:  # a damaged cache was built again on this load: say why
        st.warning(f"The cached {text.md(loaded.name)} was built again when it was loaded: {text.md(rebuilt)}.")
    return s, loaded


def _loaded(s: state.Settings):
    """The session's model; one named by the address that cannot be loaded is dropped for the default model."""
    from . import urls

    try:
        loaded = resources.loaded_model(s)
    except PruneScopeError as exc:
        if not st.session_state.get(urls.FROM_URL):
            raise
        urls.refuse_model(str(exc))
        st.rerun()
    st.session_state.pop(urls.FROM_URL, None)
    return loaded


def foreign_allocation(s: state.Settings) -> None:
    """An allocation applied for another model: say what happened and offer uniform pruning, then stop the page
    (its layers are not this model's, so nothing below could be computed)."""
    from .allocation import ALLOCATED, SOURCE_KEY

    source = st.session_state.get(SOURCE_KEY)
    problem = source.mismatch(s.model_key) if source is not None and s.granularity == ALLOCATED else None
    if problem:
        st.warning(problem)
        st.button("Back to uniform pruning", type="primary", key="btn_alloc_uniform", on_click=sidebar.back_to_uniform)
        st.stop()


def run_view(ans: jobs.Answer, button: str, key: str, idle: str, draw=None, stale: bool = False):
    """The Run button of a view whose job starts only when asked, and the following of that job
    (shared by the ramp, sensitivity and candidates views). ``draw(box, partial)`` draws what the
    job has reported so far while it runs.

    Returns ``(job, stale)``: the finished job, or ``(None, False)`` when nothing has run at these
    settings. With ``stale=True`` this session's last result at other settings comes back instead,
    marked out of date, until the user runs again.
    """
    run = st.button(button, type="primary", key=key, disabled=not ans.not_started and ans.job.running)
    box = st.empty()
    job = ans.start() if ans.not_started and run else ans.job
    if job is None:
        if stale and ans.previous is not None:
            box.warning(f"Settings changed: press **{button}** again. Shown below: the result at the previous settings.")
            return ans.previous, True
        box.info(idle)
        return None, False
    value = jobs.wait(job, ans.kind, ans.key, on_partial=None if draw is None else (lambda rows: draw(box, rows)), poll=0.5)
    if draw is not None:
        draw(box, value)
    else:
        box.empty()
    return job, False


def settings_line(s: state.Settings, loaded=None, extra: str = "") -> None:
    """One caption with every setting that produced the numbers on the page."""
    from . import runs

    r = s.request
    if runs.is_run(s.method):  # an opened run is described by its own report, not by the sidebar's granularity and sparsity
        report = runs.report_of(s.method)
        what = [f"**{text.md(runs.label(s.method))}** ({text.md(report.get('method'))})",
                f"granularity **{text.md(report.get('granularity', 'layer'))}** (the run's own)",
                f"sparsity **{float(report.get('requested_sparsity', report.get('overall_sparsity', 0.0))):.0%}** (the run's own)"]
    else:
        what = [f"method **{text.md(s.method)}**", f"granularity **{r.granularity}**",
                f"sparsity **{r.sparsity:.0%}**" if not r.granularity.is_nm else "sparsity **fixed by N:M**"]
    parts = [
        f"model **{text.md(loaded.name if loaded is not None else s.model)}**",
        *what,
        f"calibration {s.calibration}",
        f"evaluation size {s.eval_size}",
        f"seed {s.seed}",
    ]
    st.caption(" · ".join(parts) + (f" · {extra}" if extra else ""))


def links(*targets: tuple[str, str]) -> None:
    """A row of links to other views (same session, so the sidebar settings stay)."""
    from .pages_index import PAGES, page

    icons = {p.url: p.icon for p in PAGES}
    row = wrap_row()  # each link as wide as its label, wrapping on a narrow window
    for url, label in targets:
        row.page_link(page(url), label=label, icon=icons.get(url))


def layer_picker(container, names: list[str]) -> str:
    """The layer select box the Weights and Masks views share (one ``ps_layer`` choice for both)."""
    if st.session_state.get("ps_layer") not in names:
        st.session_state["ps_layer"] = names[0]
    return container.selectbox("Layer", names, key="ps_layer")


def chart(figure, where=None) -> None:
    """Draw a chart builder's Altair chart (``app/charts/``) across the width of ``where`` (a column, tile or
    placeholder; default: the page). Served through :func:`app.charts.common.served`: no schema validation on
    each rerun (the builder's test validates it) and the plot area keeps the builder's height."""
    (st if where is None else where).altair_chart(served(figure), width="stretch")


def wrap_row():
    """A row that wraps: fixed-size pictures placed in it sit side by side on a wide window and
    one under the other on a narrow one, so none runs past the window."""
    return st.container(horizontal=True, wrap=True, gap="medium")


def tile(row, width: int):
    """A fixed-width cell of a :func:`wrap_row` (a chart drawn in it with ``width="stretch"`` fills it)."""
    return row.container(width=width)


def metric_row(n: int) -> list:
    """``n`` cells for ``st.metric`` in a row that wraps, each as wide as its metric: on a narrow
    window the numbers move to the next line instead of being cut."""
    row = wrap_row()
    return [row.container(width="content") for _ in range(n)]


def short_layer(name: str) -> str:
    """A layer name without the common model prefix, for axis labels."""
    for prefix in ("bert.encoder.layer.", "model.layers.", "transformer.h.", "encoder.layer.", "roberta.encoder.layer."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def pct(x: float) -> str:
    return f"{x:.1%}"


def one_pass_note(s: state.Settings, loaded, mask_set, layer: str) -> None:
    """On the slider views, beside their numbers: the masks come from one-pass scores, an approximation of
    the method (Wanda), and how well they agree with the method's own masks, computed in the background."""
    method = resources.method_info(mask_set.method)
    if not resources.one_pass_approximation(method) or mask_set.key[-1:] != (resources.ONE_PASS,):
        return  # the method's own masks (an update, the reference numerics, the exact metrics): nothing approximated
    job = resources.exact_agreement(s, loaded, mask_set)
    polling = job is not None and not job.done.is_set()

    @st.fragment(run_every=1.0 if polling else None)
    def note() -> None:
        st.caption(agreement_text(method.label, job, layer))
        if polling and job.done.is_set():
            st.rerun()  # once, to stop polling
        elif polling:
            st.button("Stop", key="btn_stop_agreement", on_click=jobs.stop, args=("agreement", mask_set.key, jobs.session()))

    note()


def agreement_text(label: str, job, layer: str) -> str:
    """The approximation label and, once the background job is done, its agreement with the exact masks."""
    text = (
        f"**Approximation:** these masks re-threshold {label} scores taken from one pass of the dense model, so the slider "
        f"moves at once. {label} itself walks the blocks in order, each block seeing the pruned blocks before it. "
    )
    if job is None or isinstance(job.error, jobs.Stopped):
        return text + "Stopped: the exact masks were not computed at this setting (move the slider to compare again)."
    if not job.done.is_set():
        return text + "Computing the exact masks at this setting in the background to compare ..."
    if job.error is not None:
        return text + f"The exact masks could not be computed: {job.error}"
    overall, here = job.value["overall"], job.value["per_layer"][layer]
    return text + (
        f"Agreement with the exact {label} masks at this setting: Jaccard **{overall['jaccard']:.3f}** over all layers, "
        f"**{here['jaccard']:.3f}** in this layer ({here['hamming']:.1%} of its weights decided differently). "
        "Every metric the app shows (Overview, ramp, sensitivity) comes from the exact masks."
    )


def data_note(data) -> None:
    """Which part of the dataset is evaluated and which calibrates and trains (a single file is split in two)."""
    from pruning.loading.data import data_parts

    st.caption("Data: " + "; ".join(map(text.md, data_parts(data).values())) + ". Calibration and training never draw from the evaluated part.")


RATIO_COLUMN = "ratio"


def shown_table(df, metric: str):
    """``(table, column_config)``: metric rows in the unit the charts draw (accuracy in points), with headers that say
    it (downloads keep the engine's units)."""
    from .charts.common import in_points
    from .intervals import SHOWN_COLUMNS

    cols = [c for c in SHOWN_COLUMNS if c in df.columns]
    if metric != "accuracy":
        if {"value", "drop"} <= set(df.columns):  # perplexity's harm as a ratio (docs/VIEWS.md): value / (value - drop)
            ref = df["value"] - df["drop"]
            at = list(df.columns).index("drop") + 1
            df = df.copy()
            df.insert(at, RATIO_COLUMN, (df["value"] / ref.where(ref != 0)).round(3))
            return df, {RATIO_COLUMN: st.column_config.NumberColumn(
                "ratio (x)", format="%.2fx", help="perplexity over the compared model's (dense, uniform or the reference cell): 1.50x = half as high again")}
        return df, {}
    return in_points(df, metric, *cols), {c: st.column_config.NumberColumn(f"{c} (points)", format="%.2f") for c in cols}
