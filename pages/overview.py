"""Overview: the model's prunable layers, the dense metric, and what pruning with the current settings did."""

import dataclasses

import pandas as pd
import streamlit as st

from app import downloads, resources, runs, text, ui
from app.charts import masks as charts
from app import intervals as I
from app.allocation import ALLOCATED
from app.stability import flips_sentence
from pruning.masks import sparsity_table


def why_zeros_cost_the_same(granularity) -> str:
    """Why zeros save nothing by themselves, and what the current ``granularity`` (a parsed one) does about it."""
    text = (
        "**Why the pruned model is not smaller or faster (yet).** The pruned weights are zeros stored in the same "
        "dense tensors: every matrix keeps its shape (d_out x d_in, float32), so the file and the memory are as large "
        "as before, and a dense matrix multiply does exactly the same work on a zero as on any other number. "
        "Zeros pay off in only two ways: an **N:M pattern** (2:4) on hardware with sparse tensor cores "
        "(NVIDIA Ampere and later run exactly-2:4 matrices up to about twice as fast and store them in about half "
        "the space), or **structured removal**: deleting whole rows, columns, attention heads or layers so the "
        "matrices themselves get smaller. Sparse storage formats help only at very high unstructured sparsity."
    )
    if str(granularity) == "2:4":
        text += " Your current mask *is* 2:4, the pattern those tensor cores accelerate."
    elif granularity.is_nm:
        text += f" Your current mask is {granularity}: valid N:M, but only 2:4 is accelerated by today's tensor cores."
    return text


def outcome(dense: dict, pruned: dict, diff: dict) -> str:
    """How the metric moved, with both intervals and the paired difference in words."""
    name = dense["metric"]
    what = f"on {pruned['n']} held-out sentences" if name == "accuracy" else f"on {pruned['n']} text windows (lower is better)"
    text = f"{name.capitalize()} {what} went from {I.metric_text(dense)} to {I.metric_text(pruned)}"
    if name == "perplexity" and dense["value"]:
        text += f", {pruned['value'] / dense['value']:.2f}x"
    return text + f". Measured on the same examples: {I.change_text(name, diff)}."


def against_uniform(s, loaded, data, allocated_set) -> str:
    """The applied allocation against uniform per-layer pruning at the same overall sparsity, paired."""
    uniform = resources.masks(dataclasses.replace(s, granularity="layer", allocation=()), loaded, exact=True)
    first, second, diff = resources.comparison(s, loaded, data, uniform, allocated_set)
    return (
        f"Uniform per-layer pruning at the same overall sparsity ({s.sparsity:.0%}) gives {I.metric_text(first)}. "
        + I.comparison_sentence(first["metric"], "uniform", "The allocation", diff)
    )


def render() -> None:
    s, loaded = ui.opening("Overview")
    table = resources.layers(s, loaded)
    method = resources.method_info(s.method)
    mask_set = resources.masks(s, loaded, exact=True)
    counts = sparsity_table(mask_set.masks)
    removed = sum(r["pruned"] for r in counts)
    total = sum(r["params"] for r in counts)
    achieved = removed / max(1, total)

    data = resources.task_data(s, loaded)
    dense = pruned = diff = None
    if data is not None:
        dense, pruned, diff = resources.comparison(s, loaded, data, None, mask_set)

    headline(table, removed, total, achieved, dense, pruned, diff)
    if diff is not None:
        st.caption(flips_sentence(dense, pruned, "the dense model", "the pruned model"))
    st.subheader("What pruning did")
    sentences = what_pruning_did(s, method, table, removed, total, achieved, dense, pruned, diff, granularity=mask_set.granularity)
    if diff is not None and s.granularity == ALLOCATED:
        sentences.insert(2, against_uniform(s, loaded, data, mask_set))
    st.markdown(" ".join(sentences))
    st.info(why_zeros_cost_the_same(s.request.granularity))
    layers_table(s, loaded, table, counts, mask_set)
    evaluation = {"dense": dense, "pruned": pruned, "difference": diff} if dense else None  # as the CLI's prune reports it
    downloads.mask_set_buttons(st, loaded, mask_set, evaluation, key="overview")
    st.caption(
        f"Model source: {loaded.source}. Task: {loaded.task}. "
        + (f"Evaluation: {dense['n']} examples of {dense.get('dataset', '')}." if dense else "")
    )
    if data is not None:
        ui.data_note(data)


def headline(table, removed: int, total: int, achieved: float, dense, pruned, diff) -> None:
    """Layers, weights removed, overall sparsity and the metric against the dense model's."""
    c1, c2, c3, c4 = ui.metric_row(4)
    c1.metric("Prunable layers", f"{len(table)}", help="nn.Linear / Conv1D matrices the methods target")
    c2.metric("Weights removed", f"{removed:,}", help=f"of {total:,} weights in the targeted layers")
    c3.metric("Overall sparsity", f"{achieved:.1%}")
    if dense is not None and pruned is not None:
        name = dense["metric"]
        c4.metric(
            f"{name} (dense {I.value_text(name, dense['value'])})",
            I.value_text(name, pruned["value"]),
            **I.change_delta(name, diff["drop"], diff["within_noise"],
                             ratio=pruned["value"] / dense["value"] if dense["value"] else None),
            help=f"Pruned: {I.metric_text(pruned)}. Dense: {I.metric_text(dense)}. Change: paired over the same examples.",
        )
    else:
        c4.metric("Task metric", "n/a", help="a bare encoder has no task head to evaluate")


def what_pruning_did(s, method, table, removed: int, total: int, achieved: float, dense, pruned, diff, granularity=None) -> list[str]:
    """The plain-words account of what the current settings did, one sentence per fact (``granularity``: the masks'
    own, e.g. an opened run's, which the sidebar's need not be)."""
    sentences = [
        f"**{text.md(method.label)}** at **{text.md(granularity or s.request.granularity)}** granularity set **{removed:,}** of the **{total:,}** weights "
        f"in {len(table)} linear layers to zero ({achieved:.1%})."
    ]
    if dense is not None and pruned is not None:
        sentences.append(outcome(dense, pruned, diff))
    if method.updates_weights:
        sentences.append("This method also changed the weights it kept, to make up for the ones it removed.")
    return sentences


def layers_table(s, loaded, table, counts, mask_set) -> None:
    """Every prunable layer with its shape, size and the sparsity each compared method leaves in it."""
    st.subheader("Prunable layers")
    ui.default("ps_overview_methods", list(dict.fromkeys([m for m in (s.method, "magnitude") if m in resources.score_methods()])))
    compare = st.multiselect(
        "Sparsity per method (same target and granularity)",
        list(resources.score_methods()),
        key="ps_overview_methods",
        help="Per-layer sparsity differs between methods with global granularity, where one threshold spans all layers.",
    )
    rows = pd.DataFrame(
        [{"layer": r.name, "kind": r.kind, "shape (d_out x d_in)": f"{r.shape[0]} x {r.shape[1]}", "parameters": r.params} for r in table]
    )
    current = {row["layer"]: row["sparsity"] for row in counts}
    rows[f"sparsity: {runs.display(s.method)} (current)"] = rows["layer"].map(current)
    for name in compare:
        if name == s.method:
            continue
        other = resources.masks(s, loaded, method=name, exact=True)
        rows[f"sparsity: {name}"] = rows["layer"].map({r["layer"]: r["sparsity"] for r in sparsity_table(other.masks)})
    errors = (mask_set.info or {}).get("reconstruction_error")  # runs through the block walk measure it per layer
    if errors:
        rows[f"reconstruction error: {s.method}"] = rows["layer"].map(errors)
    long = rows.melt(id_vars=["layer"], value_vars=[c for c in rows.columns if c.startswith("sparsity")], var_name="method", value_name="sparsity")
    long["method"] = long["method"].str.replace("sparsity: ", "", regex=False)
    long["layer"] = long["layer"].map(ui.short_layer)
    ui.chart(charts.sparsity_bars(long, target=mask_set.sparsity))
    config = {c: st.column_config.NumberColumn(format="percent") for c in rows.columns if c.startswith("sparsity")}
    config["parameters"] = st.column_config.NumberColumn(format="localized")
    config.update({c: st.column_config.NumberColumn(format="%.4f", help="||WX - W'X||^2 / ||WX||^2 on the layer's calibration inputs") for c in rows.columns if c.startswith("reconstruction")})
    st.dataframe(rows, hide_index=True, width="stretch", column_config=config)
    downloads.table_button(st, rows, "prunescope_layers.csv", key="overview_layers", label="Download this table (CSV)")


ui.guarded(render)
