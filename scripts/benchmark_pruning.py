"""What pruning saves in an Optuna search: the same study (same sampler seed) with and without the budget.

    python scripts/benchmark_pruning.py [--trials 16] [--factor 2.0] [extra overrides ...]

Runs `hparams_search=optuna` twice into outputs/benchmark_pruning/, then prints for each the training seconds of
all jobs together, the sweep's wall time, the trials pruned and the best time to target found.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path


def run(name: str, trials: int, factor: str, extra: list[str], root: Path) -> dict:
    sweep = root / name
    args = [
        sys.executable,
        "-m",
        "trainspeed.train",
        "-m",
        "hparams_search=optuna",
        "logger=csv",
        "run_test=false",
    ]
    args += [f"hydra.sweeper.n_trials={trials}", f"hydra.sweeper.prune_factor={factor}"]
    args += ["hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={sweep}", *extra]
    started = time.perf_counter()
    subprocess.run(args, check=False, capture_output=True)
    wall = time.perf_counter() - started
    summaries = [json.loads(p.read_text()) for p in sweep.glob("[0-9]*/summary.json")]
    study = json.loads((sweep / "optuna" / "study.json").read_text())["trials"]
    values = [t["value"] for t in study if t["value"] is not None]
    return {
        "name": name,
        "train_seconds": sum(s.get("train_seconds") or 0.0 for s in summaries),
        "wall": wall,
        "pruned": sum(t["status"] == "pruned" for t in study),
        "best": min(values) if values else math.inf,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--factor", default="2.0")
    parser.add_argument("--root", type=Path, default=Path("outputs/benchmark_pruning"))
    options, extra = parser.parse_known_args()
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    off = run(f"{stamp}_no_pruning", options.trials, "null", extra, options.root)
    on = run(f"{stamp}_prune_{options.factor}", options.trials, options.factor, extra, options.root)
    print(f"{options.trials} trials, sampler seed 0")
    for r in (off, on):
        print(
            f"{r['name']:<40} train {r['train_seconds']:8.2f} s  wall {r['wall']:8.1f} s  "
            f"pruned {r['pruned']:3d}  best {r['best']:.4g} s"
        )
    print(f"pruning / none: train seconds x {on['train_seconds'] / off['train_seconds']:.2f}, wall x "
          f"{on['wall'] / off['wall']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
