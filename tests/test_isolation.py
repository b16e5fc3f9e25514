"""Engine calls leave process-wide state alone: two jobs in two threads give their solo results."""

import threading

import torch

from pruning.prune import prune
from pruning.request import PruneRequest

R = PruneRequest.make
GMP = {"steps": 4, "t0": 1, "t1": 3, "interval": 1, "history_points": 2, "holdout": 16, "batch_size": 8}
RANDOMIZED = {"k": 2, "steps": 2, "eval_every": 1, "n_last": 1, "final_steps": 2, "holdout": 16, "batch_size": 8}


def _jobs(tiny_bert, tiny_sentiment):
    return {
        "random": lambda: prune(tiny_bert, R("random", 0.6, "layer", seed=2**40)),
        "gmp": lambda: prune(tiny_bert, R("gmp", 0.6, "layer", params=GMP, seed=3), data=tiny_sentiment),
        "randomized": lambda: prune(tiny_bert, R("randomized", 0.6, "layer", params=RANDOMIZED, seed=11), data=tiny_sentiment),
    }


def _same(a, b) -> bool:
    if a.masks.keys() != b.masks.keys() or not all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks):
        return False
    if (a.weights is None) != (b.weights is None):
        return False
    return a.weights is None or all(torch.equal(a.weights[n], b.weights[n]) for n in a.weights)


def test_engine_calls_draw_nothing_from_the_process_wide_generator(tiny_bert, tiny_sentiment):
    state = torch.get_rng_state()
    threads = torch.get_num_threads()
    for job in _jobs(tiny_bert, tiny_sentiment).values():
        job()
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.get_num_threads() == threads


def test_three_jobs_in_three_threads_give_exactly_their_solo_results(tiny_bert, tiny_sentiment):
    jobs = _jobs(tiny_bert, tiny_sentiment)
    solo = {name: job() for name, job in jobs.items()}
    together, errors = {}, []
    start = threading.Barrier(len(jobs))

    def run(name):
        try:
            start.wait()
            together[name] = jobs[name]()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert all(_same(solo[name], together[name]) for name in jobs)


def test_dropout_masks_follow_the_seed(tiny_bert):
    from pruning.procedures.training import trainable_copy

    batch = tiny_bert.tokenizer(["a very good film"], return_tensors="pt")
    outs = [trainable_copy(tiny_bert, seed=s)(**batch).logits for s in (5, 5, 6)]
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_minilm_rt_fine_tune_gives_the_same_model_while_another_thread_draws_from_the_global_generator():
    """The one-time fine-tune of the embedded classifier (which the app may run as a job) seeds its
    head, batch order and dropout from its own generators: two training steps on 16 sentences
    give bit-identical weights whether or not another thread draws from torch's global stream."""
    from pruning.embedded import minilm_rt as finetune
    from pruning.loading.data import rotten_tomatoes_splits

    texts, labels = (part[:16] for part in rotten_tomatoes_splits().splits["train"])
    recipe = {**finetune.RECIPE, "batch_size": 8}

    def train():
        tokenizer, model = finetune._base_classifier(recipe)
        encoded = tokenizer(texts, truncation=True, max_length=recipe["max_length"], return_attention_mask=False)["input_ids"]
        finetune._fit(model, tokenizer, encoded, labels, recipe, 2, None)
        return {n: p.detach().clone() for n, p in model.named_parameters()}

    solo = train()
    stop = threading.Event()

    def draw():
        while not stop.is_set():
            torch.rand(4096)
            torch.nn.functional.dropout(torch.ones(4096), 0.5, training=True)

    noise = threading.Thread(target=draw)
    noise.start()
    try:
        beside = train()
    finally:
        stop.set()
        noise.join()
    assert solo.keys() == beside.keys()
    assert all(torch.equal(solo[n], beside[n]) for n in solo)
    assert not torch.equal(solo["classifier.weight"], torch.zeros_like(solo["classifier.weight"]))
