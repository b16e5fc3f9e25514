"""A trained method on the tiny BERT, with a training checkpoint: run by tests/test_resume_training.py in a
subprocess (so the test can ``kill -9`` it mid-way and run it again).

    python tests/resume_worker.py --method mgpp --checkpoint C.ckpt --result R.pt [--every 1] [--delay 0.2]

Writes the final masks, weights, other fine-tuned parameters and the method's info (history) to
``--result`` with torch.save; prints the checkpoint's notes and warnings on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

PARAMS = {
    "mgpp": {"steps": 8, "t0": 1, "t1": 5, "interval": 1, "history_points": 4, "holdout": 16, "batch_size": 8},
    "gmp": {"steps": 8, "t0": 1, "t1": 5, "interval": 1, "history_points": 4, "holdout": 16, "batch_size": 8},
}


def main() -> int:
    import torch

    torch.set_num_threads(1)  # the entry point sets threads, never the engine
    from conftest import make_tiny_bert, make_tiny_sentiment
    from pruning.prune import prune
    from pruning.request import PruneRequest
    from pruning.store.resume import TrainingCheckpoint, TrainingStopped

    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="mgpp")
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait after each step (time for the test to kill us)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()

    params = dict(PARAMS[args.method])
    params.update(dict(p.split("=", 1) for p in args.param))
    request = PruneRequest.make(args.method, args.sparsity, "global", params=params, seed=0)
    ckpt = TrainingCheckpoint(args.checkpoint, every_steps=args.every, warn=lambda m: print(f"warning: {m}", flush=True),
                              note=lambda m: print(m, flush=True))

    def progress(done, total, message):
        if args.delay:
            time.sleep(args.delay)

    try:
        result = prune(make_tiny_bert(), request, data=make_tiny_sentiment(), progress=progress, checkpoint=ckpt)
    except TrainingStopped as stop:
        print(f"stopped at step {stop.done} of {stop.total}", flush=True)
        return 0
    except Exception as exc:  # the test reads the message
        print(f"error: {exc}", flush=True)
        return 2
    info = {k: result.info[k] for k in ("history",) if k in result.info}
    torch.save({"masks": result.masks, "weights": result.weights, "other": getattr(result, "other_params", {}),
                "info": json.dumps(info, sort_keys=True)}, args.result)
    print(f"done; resumed_at_step={result.info.get('resumed_at_step')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
