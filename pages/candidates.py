"""Random candidates: K masks sampled around a criterion, their overlaps, their cheap scores, the chosen one."""

import pandas as pd
import streamlit as st

from app import downloads, resources, runs, style, ui
from app.charts import candidates as charts
from app.charts import masks as mask_charts
from app.charts.common import in_points
from app import intervals as I
from app.stability import flips_sentence

RANDOMNESS = (5e-5, 8e-5, 1e-4, 3e-4, 1e-3, 1e-2)


INTRO = (
    "A deterministic criterion gives one mask. The randomized method of Li et al. (2023) samples **K** masks around it: "
    "each weight is drawn with probability proportional to score^a, the draw is repeated R times, and the k most drawn "
    "weights are kept. Fewer rounds (small randomness knob r) means more random masks. Each candidate is then scored "
    "cheaply, by the masked model's metric on a held-out slice of the training data (no training), and the best is chosen."
)


def choice(s) -> resources.CandidateChoice:
    """The view's own controls (base criterion, randomness, K, power, seed, held-out size)."""
    bases = list(resources.score_methods())
    controls = ui.wrap_row()
    c1, c2, c3, c4, c5 = (ui.tile(controls, w) for w in (200, 230, 150, 150, 150))
    ui.default("ps_cand_base", "magnitude" if "magnitude" in bases else bases[0])
    ui.default("ps_cand_r", 1e-4)
    ui.default("ps_cand_k", 4)  # the authors used 8; each candidate costs R top-k draws per layer
    ui.default("ps_cand_a", 5.0)
    ui.default("ps_cand_seed", int(s.seed))
    ui.default("ps_cand_holdout", min(256, max(16, s.eval_size // 16 * 16)))
    base = c1.selectbox("Base criterion", bases, key="ps_cand_base")
    r = c2.select_slider("Randomness knob r", options=RANDOMNESS, key="ps_cand_r", format_func=lambda v: f"{v:g}", help="R = max(floor((N - k) r), 1) sampling rounds: larger r, more rounds, closer to the deterministic mask.")
    k = c3.number_input("K candidates", min_value=2, max_value=32, key="ps_cand_k", help="The authors used K = 8. Each candidate costs R weighted draws per layer, so K = 4 keeps this view quick on a small CPU.")
    power = c4.number_input("Power a", min_value=1.0, max_value=20.0, step=1.0, key="ps_cand_a")
    seed = c5.number_input("Seed", min_value=0, max_value=2**31 - 1, key="ps_cand_seed")
    holdout = st.slider("Held-out examples for selection", 16, 1024, step=16, key="ps_cand_holdout")
    return resources.CandidateChoice(base, float(r), int(k), float(power), int(seed), int(holdout))


def render() -> None:
    s, loaded = ui.opening("Random candidates", INTRO)
    c = choice(s)
    if loaded.task == "encoder":
        st.warning("This model is a bare encoder: candidates need a task metric to be selected by.")
        return
    data = resources.task_data(s, loaded)
    ans = resources.candidates(s, loaded, data, c)
    idle = f"Press the button to sample {c.k} masks and score each on {c.holdout} held-out training examples (results are cached)."
    job, stale = ui.run_view(ans, "Sample and score the candidates", "btn_cand_run", idle, stale=True)
    if job is not None:
        show(job.value, "base" if stale else c.base)
        if not stale:
            chosen_section(s, loaded, data, job.value, c, ans.key)


def show(pool, base: str) -> None:
    """The chosen candidate, the overlaps and every candidate's score."""
    chosen = pool.chosen
    names = [f"c{i + 1}" for i in range(len(pool.masks))]
    det = pool.deterministic_score
    metric = det["metric"]
    table = candidate_table(pool, names)
    best = table.iloc[chosen].to_dict()

    m1, m2, m3, m4 = ui.metric_row(4)
    m1.metric("Chosen candidate", names[chosen])
    m2.metric(
        f"Its held-out {metric}",
        I.value_text(metric, best["value"]),
        **I.change_delta(metric, best["drop"], best["vs deterministic"] == I.WITHIN_NOISE, " vs deterministic"),
        help=f"{I.metric_text(pool.scores[chosen], held_out=True)}; against the deterministic mask on the same examples: {I.change_text(metric, best)}",
    )
    m3.metric(f"Deterministic {base} mask", I.value_text(metric, det["value"]), help=I.metric_text(det, held_out=True))
    rounds = sorted(set(pool.rounds.values()))
    m4.metric("Sampling rounds R", f"{rounds[0]:,}" if len(rounds) == 1 else f"{rounds[0]:,}-{rounds[-1]:,}", help="per layer")

    row = ui.wrap_row()
    left, right = ui.tile(row, 420), ui.tile(row, 440)
    jac = [{"a": names[i], "b": names[j], "value": pool.jaccard[i][j]} for i in range(len(names)) for j in range(len(names))]
    ui.chart(mask_charts.overlap_matrix(pd.DataFrame(jac), title="candidate x candidate (all layers)"), left)
    with right:
        scores, band, unit = scores_shown(table, det, metric)
        ui.chart(charts.candidate_bars_ci(scores, f"held-out {metric} (selection score{unit})", band))
        ui.chart(charts.candidate_bars(table, "overlap", "overlap with the deterministic mask", ".3f", min_span=0.05))
    st.caption(
        f"Chosen (red): the best held-out {metric}; the grey band is the deterministic {base} mask, {I.metric_text(det, held_out=True)}. "
        f"Lines: each candidate's 95% interval. {I.comparison_sentence(metric, 'the deterministic mask', 'The chosen candidate', best)} "
        "The overlap with the deterministic mask shows how far the randomness knob moves the candidates away from it. "
        "The candidates are sampled around the criterion's cached scores (for Wanda: one pass of the dense model, the "
        "approximation the Weights view labels); every score above is measured on the masked model itself. "
        "Selection uses held-out TRAINING data, never the test split. Selection after a short fine-tune of each candidate "
        "(early evaluation) is the randomized method in the sidebar; the Method steps view draws its candidates' curves."
    )
    shown, config = ui.shown_table(table, metric)
    st.dataframe(shown, hide_index=True, column_config=config)
    top = [names[i] for i, x in enumerate(pool.scores) if x["score"] == pool.scores[chosen]["score"]]
    st.caption(
        "Tie rule: the highest held-out score wins; among equal scores, the lower held-out loss; then the lower candidate number."
        + (f" Here {', '.join(top)} tie on the score, and {names[chosen]} wins on the rule." if len(top) > 1 else "")
    )


def chosen_masks(pool, c, key: tuple) -> tuple[resources.MaskSet, resources.MaskSet]:
    """The chosen candidate and the deterministic mask as mask sets (the other views' and the evaluation's currency)."""
    info = {"candidate": pool.chosen + 1, "base": c.base, "k": c.k, "randomness": c.randomness, "power": c.power,
            "seed": c.seed, "holdout": c.holdout, "chosen_by": "held-out training examples (no fine-tune)"}
    chosen = resources.MaskSet("randomized", pool.sparsity, pool.granularity, pool.masks[pool.chosen], info=info,
                               ident=("candidate", key, pool.chosen))
    det = resources.MaskSet(c.base, pool.sparsity, pool.granularity, pool.deterministic, info={"base": c.base},
                            ident=("candidate deterministic", key))
    return chosen, det


def chosen_section(s, loaded, data, pool, c, key: tuple) -> None:
    """The winner's curse undone: the chosen mask and the deterministic one measured on the test split (examples
    the choice never saw); the chosen mask's files; and the chosen mask opened as a run in every view."""
    st.subheader("The chosen candidate on examples it was not chosen on")
    chosen, det = chosen_masks(pool, c, key)
    st.caption(
        f"The chosen candidate's gain above is measured on the same {c.holdout} held-out training examples that chose it: the "
        f"best of {c.k} looks better there than it is (the winner's curse). The test split below never took part in the choice."
    )
    if st.toggle(f"Evaluate the chosen candidate and the deterministic mask on the test split ({s.eval_size} examples, the sidebar's evaluation size)",
                 key="ps_cand_test"):
        first, second, diff = resources.comparison(s, loaded, data, det, chosen)
        metric = first["metric"]
        m1, m2 = ui.metric_row(2)
        m1.metric(f"Chosen candidate, test {metric}", I.value_text(metric, second["value"]),
                  **I.change_delta(metric, diff["drop"], diff["within_noise"], " vs deterministic"), help=I.metric_text(second))
        m2.metric(f"Deterministic {c.base} mask, test {metric}", I.value_text(metric, first["value"]), help=I.metric_text(first))
        st.markdown(I.comparison_sentence(metric, "the deterministic mask", "On the test split the chosen candidate", diff))
        st.caption(flips_sentence(first, second, "the deterministic mask", "the chosen candidate"))
    row = ui.wrap_row()
    downloads.mask_set_buttons(ui.tile(row, 480), loaded, chosen, key="cand_chosen")
    ui.tile(row, 330).button("Open the chosen mask as a run in every view", key="btn_cand_open", on_click=open_as_run,
                             args=(loaded, chosen, c), help="Writes it to the runs directory (as the CLI's prune would) and makes it the sidebar's method.")
    opened = st.session_state.get("ps_cand_opened")
    if opened:
        st.success(f"Opened as **{opened}** (the sidebar's method now); the Runs view lists it.")


def run_name(c, chosen) -> str:
    """The run folder's name: what made the candidate, short and stable."""
    return f"candidate-{c.base}-s{chosen.sparsity:g}-{chosen.granularity.replace(':', 'of')}-k{c.k}-r{c.randomness:g}-seed{c.seed}-c{chosen.info['candidate']}"


def open_as_run(loaded, chosen, c) -> None:
    """Write the chosen mask as a run folder under the runs directory (a temporary sibling renamed into place) and
    make it the sidebar's method."""
    import shutil
    import tempfile
    from pathlib import Path

    from pruning.store.runs import runs_dir

    root = runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / run_name(c, chosen)
    if not folder.exists():
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=root))
        try:
            for name, data in downloads.run_files(loaded, chosen).items():
                (tmp / name).write_bytes(data)
            tmp.rename(folder)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not folder.exists():
                raise
    value = runs.remember(folder)
    st.session_state["ps_method"] = value
    st.session_state["ps_cand_opened"] = runs.label(value)


def scores_shown(table: pd.DataFrame, det: dict, metric: str) -> tuple[pd.DataFrame, dict, str]:
    """The candidates' scores and the deterministic band in the unit the views show (accuracy in points),
    and that unit for the axis title."""
    scores = in_points(table.rename(columns={"value": "score"}), metric, "score", "ci_low", "ci_high")
    band = {k: style.shown_value(metric, det[k]) for k in ("value", "ci_low", "ci_high")}
    return scores, band, ", points" if metric == "accuracy" else ""


def candidate_table(pool, names: list) -> pd.DataFrame:
    """One row per candidate: its held-out metric with interval and n, the paired difference against the
    deterministic mask on the same held-out examples (harm-positive), in words, and its overlap."""
    rows = []
    for i, (score, diff) in enumerate(zip(pool.scores, resources.against_deterministic(pool))):
        noise = I.WITHIN_NOISE if diff["within_noise"] else I.TOLD_APART
        rows.append({"candidate": names[i], **I.value_columns(score), **I.drop_columns(diff), "vs deterministic": noise})
    return pd.DataFrame(rows).assign(overlap=pool.overlap_with_deterministic, chosen=[i == pool.chosen for i in range(len(names))])

ui.guarded(render)
