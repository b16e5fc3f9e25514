"""Learn: pruning explained on an 8x8 layer a person can read, live with the sparsity slider."""

import pandas as pd
import streamlit as st
import torch

from app import ui
from app.charts import learn as charts
from pruning.analysis.distribution import output_error, toy_layer
from pruning.masks import compute_masks, parse_granularity
from pruning.catalog import all_methods

MATRIX_WIDTH = 330  # px: an 8x8 matrix with its numbers readable; the row wraps on a narrow window
PATTERNS = {"per-layer": "layer", "per-row": "row", "2:4": "2:4", "4:8": "4:8"}


def frame(matrix, kept=None) -> pd.DataFrame:
    rows = []
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            rows.append({"row": i, "col": j, "value": float(matrix[i, j]), "kept": True if kept is None else bool(kept[i, j])})
    return pd.DataFrame(rows)


def criteria() -> dict:
    """The criteria that show themselves on a toy layer (``Method.explain.toy``), in registration order."""
    return {n: m for n, m in all_methods().items() if m.explain is not None and m.explain.toy is not None}


def toy_scores(toy, seed: int) -> dict:
    """Each criterion's scores of the toy layer, from its own registration (the 16 tokens are its calibration)."""
    w = torch.from_numpy(toy.weight).float()
    sq_sum = torch.from_numpy(toy.input_sq_sum).float()
    return {n: m.explain.toy(w, sq_sum, toy.inputs.shape[1], seed) for n, m in criteria().items()}


def render() -> None:
    st.title("Learn: pruning on an 8x8 layer")
    s = ui.settings()
    st.markdown(
        "A linear layer computes **y = W x**. Pruning sets some entries of **W** to zero. Which ones? Each *criterion* gives "
        "every weight a **score**; the **mask** keeps the highest scores and the *granularity* says where they compete. "
        "Below, a made-up 8x8 layer with 16 input tokens: two input features are much louder than the rest. Move the "
        "**Target sparsity** slider in the sidebar and switch the pattern to watch everything change."
    )
    c1, c2, c3 = st.columns(3)
    pattern = c1.radio("Pattern (granularity)", list(PATTERNS), horizontal=True, key="ps_learn_pattern")
    criterion = c2.radio("Criterion", list(criteria()), horizontal=True, key="ps_learn_criterion")
    ui.default("ps_learn_seed", 0)
    seed = c3.number_input("Example seed", min_value=0, max_value=999, key="ps_learn_seed")
    toy = toy_layer(8, 16, seed=int(seed))
    scores = toy_scores(toy, s.seed)
    granularity = PATTERNS[pattern]
    sparsity = s.sparsity
    masks = {name: compute_masks({"toy": sc}, sparsity, granularity)["toy"].numpy() for name, sc in scores.items()}
    errors = {name: output_error(toy.weight, m, toy.inputs) for name, m in masks.items()}
    mask = masks[criterion]
    shown_sparsity = 1 - mask.sum() / mask.size

    m1, m2, m3, m4 = ui.metric_row(4)
    m1.metric("Weights pruned", f"{int(mask.size - mask.sum())} of {mask.size}")
    m2.metric("Sparsity", f"{shown_sparsity:.0%}", help="N:M patterns fix it at N/M" if parse_granularity(granularity).is_nm else None)
    m3.metric(f"Output error ({criterion})", f"{errors[criterion]:.1%}", help="||W X - (M * W) X|| / ||W X|| over the 16 tokens")
    best = min(errors, key=errors.get)
    m4.metric("Best criterion here", best, help=", ".join(f"{k}: {v:.1%}" for k, v in errors.items()))

    st.subheader("1. Weights W and the mask")
    row = ui.wrap_row()
    ui.chart(charts.matrix_heatmap(frame(toy.weight), "W (dense)", "weight"), ui.tile(row, MATRIX_WIDTH))
    ui.chart(charts.matrix_heatmap(frame(toy.weight, mask), f"W pruned: {criterion}, {pattern}", "weight"), ui.tile(row, MATRIX_WIDTH))
    st.caption("Grey cells are pruned (set to zero). On the real model, the Weights view shows the histogram of kept and pruned weights and the Masks view the mask of a whole layer.")
    ui.links(("weights", "Weights: kept and pruned weights, threshold"), ("masks", "Masks: a whole layer's mask"))

    scores_section(toy, scores, masks, errors)
    granularity_section()
    error_section(toy, scores, granularity, shown_sparsity)


def scores_section(toy, scores: dict, masks: dict, errors: dict) -> None:
    st.subheader("2. Scores of each criterion")
    row = ui.wrap_row()
    shown = criteria()
    cols = [ui.tile(row, MATRIX_WIDTH) for _ in shown]
    for col, (name, method) in zip(cols, shown.items()):
        ui.chart(charts.matrix_heatmap(frame(scores[name].numpy(), masks[name]), name, "score", fmt=".2f", scheme="greens", domain_mid=None), col)
        col.caption(f"{method.explain.toy_note} Output error {errors[name]:.1%}.")
    norms = pd.DataFrame({"input j": range(8), "||X_j|| (norm over 16 tokens)": toy.input_sq_sum**0.5})
    st.dataframe(norms.T, width="stretch")
    st.caption(
        "A criterion that multiplies each weight by its input's norm scores the columns of the two loud inputs high even for small weights. "
        "The Overview shows what these choices do to the real model's accuracy."
    )
    ui.links(("overview", "Overview: weights removed and metric change"), ("masks", "Masks: how much two criteria agree"))


def granularity_section() -> None:
    st.subheader("3. Where the weights compete (granularity)")
    st.markdown(
        "- **per-layer**: one threshold over the whole matrix: some rows may lose almost everything.\n"
        "- **per-row**: each output row keeps the same number of weights (Wanda's choice).\n"
        "- **2:4 / 4:8**: in each group of 4 (or 8) consecutive inputs of a row, the 2 (or 4) lowest scores go. "
        "Sparsity is fixed at 50% and the slider is ignored; 2:4 is the pattern sparse tensor cores run fast. "
        "The Masks view checks any mask for it."
    )
    ui.links(("masks", "Masks: N:M check and per-layer sparsity"), ("overview", "Overview: why zeros alone save nothing"))


def error_section(toy, scores: dict, granularity: str, shown_sparsity: float) -> None:
    st.subheader("4. Output error against sparsity")
    curve = []
    for sp in [i / 10 for i in range(10)]:
        for name, sc in scores.items():
            g = "layer" if parse_granularity(granularity).is_nm else granularity
            m = compute_masks({"toy": sc}, sp, g)["toy"].numpy()
            curve.append({"criterion": name, "sparsity": sp, "error": output_error(toy.weight, m, toy.inputs)})
    ui.chart(charts.error_curve(pd.DataFrame(curve), current=shown_sparsity))
    st.caption(
        "How far the pruned layer's output moves from the dense one. On the real model the task metric plays this role: "
        "the Sparsity ramp draws it against sparsity, Layer sensitivity per layer, and "
        "Random candidates shows how sampling many masks around a criterion can beat it."
    )
    ui.links(("ramp", "Sparsity ramp"), ("sensitivity", "Layer sensitivity"), ("candidates", "Random candidates"))


ui.guarded(render)
