"""The Stability view's results: one stability run per chosen method, as a job of ``app.jobs``.

Like ``app.resources`` (and built on it), the key holds every setting that produced the result:
the model, the data, each method's request (the sidebar's sparsity, granularity, parameters,
calibration size and seed), the number and kind of draws, and the evaluation size.
"""

from __future__ import annotations

from dataclasses import dataclass

from .jobs import Answer, Job, answer
from .resources import request_for
from .state import Settings


@dataclass(frozen=True)
class StabilityChoice:
    """The view's own settings: which methods, how many draws, which kind."""

    methods: tuple[str, ...]
    draws: int
    kind: str


def stable_methods() -> dict:
    """Methods a stability run can repeat in seconds to minutes: every registered method but the seed
    family's (they train; their run is the Method steps view)."""
    from pruning.catalog import all_methods

    return {name: m for name, m in all_methods().items() if m.family != "seed" and not m.needs_training_data}


def stability(s: Settings, loaded, data, c: StabilityChoice) -> Answer:
    """A :class:`pruning.analysis.stability.StabilityResult` per chosen method (a list, in the chosen order);
    each finished draw's row is handed to the page as it comes (``job.partial``)."""
    requests = [request_for(s, m) for m in c.methods]
    key = (s.model_key, s.data_key, tuple(r.key for r in requests), c.draws, c.kind, s.eval_size)

    def prepare():
        def work(job: Job):
            from pruning.analysis.flips import predict
            from pruning.analysis.stability import stability as run

            out = []
            dense = predict(loaded, data, None, max_examples=s.eval_size, progress=lambda d, t, m: job.progress(0, 1, f"dense model: {m}"))  # once for every method
            for i, request in enumerate(requests):
                def progress(done, total, message, i=i, method=request.method):
                    job.progress(i * total + done, len(requests) * total, f"{method}: {message}")

                out.append(run(loaded, request, draws=c.draws, kind=c.kind, data=data, max_examples=s.eval_size, progress=progress, on_draw=job.add, dense=dense))
            return out

        return work

    label = f"Stability of {', '.join(c.methods)} over {c.draws} draws"
    return answer("stability", key, label, prepare)


def flips_sentence(first: dict | None, second: dict | None, a: str, b: str) -> str:
    """Flips beside a paired comparison: how many of the same items ``b`` answers differently from ``a``
    (two cached evaluations of ``app.resources.evaluation``), in words; "" when they cannot be compared."""
    from pruning.analysis.flips import evaluation_flips

    if first is None or second is None:
        return ""
    f = evaluation_flips(first, second)
    if f is None:
        return ""
    unit = "examples" if first.get("metric") == "accuracy" else "predicted tokens (top-1 next token)"
    text = (
        f"**Flips:** {b} answers differently from {a} on **{f['flips']:.1%}** of the {f['items']:,} {unit} "
        f"({f['flipped']:,}; 95% Wilson interval {f['flips_ci_low']:.1%} to {f['flips_ci_high']:.1%})"
    )
    if "to_wrong" in f:
        text += f": {f['to_wrong']:,} from right to wrong, {f['to_right']:,} from wrong to right, {f['wrong_to_wrong']:,} from one wrong answer to another"
    return text + ". The same metric can hide many changed answers; the Stability view lists the examples that flip most often."
