"""Masks: a layer's mask as a picture, per-layer sparsity, the N:M check, and overlaps between methods."""

import itertools

import pandas as pd
import streamlit as st

from app import downloads, resources, runs, ui
from app.charts import masks as charts
from pruning.analysis.distribution import AGREEMENT, agreement, mask_grid, to_numpy
from pruning.masks import mask_overlap, nm_violations, sparsity_table

WHOLE = "whole layer (block averages)"
CORNER = "top-left corner, one cell per weight"


def nm_table(masks: dict) -> pd.DataFrame:
    rows = []
    for name, m in masks.items():
        row = {"layer": name}
        for n, mm in ((2, 4), (4, 8)):
            bad = nm_violations(m, n, mm)
            groups = m.shape[0] * -(-m.shape[1] // mm)
            row[f"{n}:{mm} valid"] = "yes" if bad == 0 else "no"
            row[f"{n}:{mm} groups breaking it"] = f"{bad:,} of {groups:,}"
        rows.append(row)
    return pd.DataFrame(rows)


def render() -> None:
    s, loaded = ui.opening("Masks")
    names = [r.name for r in resources.layers(s, loaded)]
    c1, c2 = st.columns([3, 2])
    layer = ui.layer_picker(c1, names)
    view = c2.radio("Picture", [WHOLE, CORNER], key="ps_masks_view", horizontal=True)

    mask_set = resources.masks(s, loaded)
    mask = mask_set.masks[layer]
    table = pd.DataFrame(sparsity_table(mask_set.masks))
    row = table.set_index("layer").loc[layer]
    m1, m2, m3, m4 = ui.metric_row(4)
    m1.metric("Kept in this layer", f"{int(row['kept']):,}", help=f"of {int(row['params']):,}")
    m2.metric("Layer sparsity", f"{row['sparsity']:.1%}")
    m3.metric("Overall sparsity", f"{1 - table['kept'].sum() / table['params'].sum():.2%}")
    bad24 = nm_violations(mask, 2, 4)
    m4.metric("2:4 groups breaking the pattern", f"{bad24:,}", help="groups of 4 consecutive inputs of a row that keep more than 2 weights")
    ui.one_pass_note(s, loaded, mask_set, layer)

    cells, br, bc, note = picture(mask, view, lambda build: resources.of_masks(mask_set, f"grid {layer}", build))
    ui.chart(charts.mask_heatmap(cells, br, bc, title=layer))
    st.caption(note)

    st.subheader("Sparsity per layer")
    bars = table.assign(method=runs.display(s.method))[["layer", "method", "sparsity"]]
    bars["layer"] = bars["layer"].map(ui.short_layer)
    ui.chart(charts.sparsity_bars(bars, target=mask_set.sparsity))
    downloads.mask_set_buttons(st, loaded, mask_set, key="masks")
    nm_check(mask_set)
    compare(s, loaded, mask_set, layer)


def picture(mask, view: str, cached):
    """``(cells, block rows, block columns, caption)`` of the mask heatmap: the whole layer in block averages, or one corner."""
    d_out, d_in = mask.shape
    if view == WHOLE:
        grid = cached(lambda: mask_grid(mask, 64, 96))
        br, bc = grid.block
        cells = pd.DataFrame(grid.rows())
        note = (
            f"{d_out} x {d_in} mask shown as {grid.kept.shape[0]} x {grid.kept.shape[1]} cells; each cell is the fraction kept "
            f"in a block of {br} x {bc} weights"
            + (" (every weight is its own cell)." if br * bc == 1 else ".")
        )
        if grid.kept.shape[0] * br < d_out or grid.kept.shape[1] * bc < d_in:
            note += f" The last {d_out - grid.kept.shape[0] * br} rows and {d_in - grid.kept.shape[1] * bc} columns do not fill a block and are not drawn."
    else:
        rows, cols = min(d_out, 32), min(d_in, 64)
        corner = to_numpy(mask[:rows, :cols])
        br = bc = 1
        cells = pd.DataFrame(
            [{"out_from": i, "in_from": j, "kept": float(corner[i, j])} for i in range(rows) for j in range(cols)]
        )
        note = f"The first {rows} output rows and {cols} input columns at full resolution: dark = kept, light = pruned. N:M groups run along a row."
    return cells, br, bc, note


def nm_check(mask_set) -> None:
    """Whether every layer obeys 2:4 and 4:8, and per layer on request."""
    st.subheader("N:M check")
    all24 = resources.of_masks(mask_set, "2:4 valid", lambda: all(nm_violations(m, 2, 4) == 0 for m in mask_set.masks.values()))
    all48 = resources.of_masks(mask_set, "4:8 valid", lambda: all(nm_violations(m, 4, 8) == 0 for m in mask_set.masks.values()))
    st.markdown(
        f"Every layer is valid **2:4**: **{'yes' if all24 else 'no'}** · valid **4:8**: **{'yes' if all48 else 'no'}**. "
        "A 2:4 mask prunes 2 of every 4 consecutive inputs of each row; only that exact pattern is accelerated by sparse tensor cores."
    )
    if st.toggle("Per-layer N:M check", key="ps_masks_nm_table"):
        st.dataframe(resources.of_masks(mask_set, "N:M table", lambda: nm_table(mask_set.masks)), hide_index=True)


def compare(s, loaded, mask_set, layer: str) -> None:
    """Jaccard overlaps between the masks of several methods at the same sparsity and granularity."""
    st.subheader("Overlap between methods at the same sparsity")
    methods = list(resources.score_methods())
    options = methods + [m for m in [s.method] if m not in methods]
    default = [m for m in dict.fromkeys([s.method, "magnitude", "wanda"]) if m in options][:2]
    ui.default("ps_masks_methods", default)
    last = st.session_state.get("ps_masks_follows")
    st.session_state["ps_masks_follows"] = s.method
    if last is not None and last != s.method and s.method not in st.session_state["ps_masks_methods"]:
        st.session_state["ps_masks_methods"] = [s.method] + list(st.session_state["ps_masks_methods"])  # a newly opened run joins
    st.session_state["ps_masks_methods"] = [m for m in st.session_state["ps_masks_methods"] if m in options]
    chosen = st.multiselect(
        "Methods to compare",
        options,
        format_func=runs.display,
        key="ps_masks_methods",
        help="Score-based methods are re-thresholded from cached scores; others are pruned once per setting.",
    )
    if len(chosen) < 2:
        st.info("Choose at least two methods to compare their masks.")
        return
    sets = {m: mask_set if m == s.method else resources.masks(s, loaded, method=m) for m in chosen}

    def overlaps():
        pairs = {}
        for a, b in itertools.combinations(chosen, 2):
            pairs[(a, b)] = mask_overlap(sets[a].masks, sets[b].masks)
        return pairs

    pairs = resources.of_masks(tuple(sets[m] for m in chosen), "overlaps", overlaps)
    overall, per_layer, this_layer = [], [], []
    name = runs.display
    for m in chosen:
        overall.append({"a": name(m), "b": name(m), "value": 1.0})
        this_layer.append({"a": name(m), "b": name(m), "value": 1.0})
    for (a, b), ov in ((tuple(map(name, k)), v) for k, v in pairs.items()):
        for x, y in ((a, b), (b, a)):
            overall.append({"a": x, "b": y, "value": ov["overall"]["jaccard"]})
            this_layer.append({"a": x, "b": y, "value": ov["per_layer"][layer]["jaccard"]})
        per_layer.extend({"layer": ui.short_layer(n), "pair": f"{a} / {b}", "jaccard": v["jaccard"]} for n, v in ov["per_layer"].items())
    side = max(300, 90 * len(chosen) + 140)
    row = ui.wrap_row()
    ui.chart(charts.overlap_matrix(pd.DataFrame(overall), title="all layers together"), ui.tile(row, side))
    ui.chart(charts.overlap_matrix(pd.DataFrame(this_layer), title=ui.short_layer(layer)), ui.tile(row, side))
    ui.chart(charts.layer_overlap_lines(pd.DataFrame(per_layer)))
    downloads.table_button(st, pd.DataFrame(per_layer), "prunescope_overlap.csv", key="masks_overlap", label="Download the overlaps (CSV)")
    st.caption(
        "Jaccard overlap = weights kept by both / weights kept by either (1 = the same mask). Two independent random masks "
        f"at sparsity s overlap about (1-s)/(1+s) = {(1 - mask_set.sparsity) / (1 + mask_set.sparsity):.2f}."
    )
    disagreement(sets, chosen, layer)


def disagreement(sets: dict, chosen: list, layer: str) -> None:
    """For one layer and two of the compared methods: which weights both keep, one keeps, neither keeps."""
    st.subheader("Where two masks disagree")
    c1, c2 = st.columns(2)
    if st.session_state.get("ps_masks_a") not in chosen:
        st.session_state["ps_masks_a"] = chosen[0]
    a = c1.selectbox("Mask A", chosen, key="ps_masks_a", format_func=runs.display)
    others = [m for m in chosen if m != a]
    if st.session_state.get("ps_masks_b") not in others:
        st.session_state["ps_masks_b"] = others[0]
    b = c2.selectbox("Mask B", others, key="ps_masks_b", format_func=runs.display)
    found = resources.of_masks((sets[a], sets[b]), f"agreement {layer}", lambda: agreement(sets[a].masks[layer], sets[b].masks[layer]))
    counts = found["counts"]
    total = sum(counts.values())
    row = ui.wrap_row()
    row.metric("Jaccard overlap", f"{found['jaccard']:.3f}", help="kept by both / kept by either", width="content")
    for name in AGREEMENT:
        label = name.replace("A only", f"{runs.display(a)} only").replace("B only", f"{runs.display(b)} only")
        row.metric(label, f"{counts[name] / total:.1%}", help=f"{counts[name]:,} of {total:,} weights", width="content")
    ui.chart(charts.agreement_picture(pd.DataFrame(found["cells"]), runs.display(a), runs.display(b), title=f"{ui.short_layer(layer)}: top-left corner"))
    st.caption(
        "One cell per weight of the layer's top-left corner (32 output rows x 64 input columns). Blue: kept by both, grey: pruned by both, "
        f"and in each method's own colour the weights only that method keeps. The Jaccard number is "
        f"both / (both + {runs.display(a)} only + {runs.display(b)} only) over the whole layer."
    )


ui.guarded(render)
