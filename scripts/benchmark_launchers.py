"""One sweep, one after another vs side by side: wall time and the jobs' recorded training seconds.

    python scripts/benchmark_launchers.py [--n-jobs 2] [sweep overrides ...]   # default: -m experiment=optimizers

Runs the sweep with Hydra's basic launcher, then with `hydra/launcher=joblib hydra.launcher.n_jobs=N`, into
outputs/benchmark_launchers/, and prints each one's wall time, median and summed time to target, and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(name: str, launcher: list[str], sweep: list[str], root: Path) -> dict:
    folder = root / name
    load = os.getloadavg()[0]
    started = time.perf_counter()
    args = [sys.executable, "-m", "trainspeed.train", "-m", *sweep, *launcher, f"hydra.sweep.dir={folder}"]
    code = subprocess.run(args, check=False, capture_output=True).returncode
    wall = time.perf_counter() - started
    summaries = [json.loads(p.read_text()) for p in folder.glob("[0-9]*/summary.json")]
    seconds = [s["time_to_target"]["seconds"] for s in summaries if s.get("reached_target")]
    return {
        "name": name,
        "code": code,
        "wall": wall,
        "jobs": len(summaries),
        "reached": len(seconds),
        "median": statistics.median(seconds) if seconds else float("nan"),
        "sum": sum(seconds),
        "load": (load, os.getloadavg()[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--root", type=Path, default=Path("outputs/benchmark_launchers"))
    options, sweep = parser.parse_known_args()
    sweep = sweep or ["experiment=optimizers", "logger=csv"]
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    results = [
        run(f"{stamp}_basic", [], sweep, options.root),
        run(f"{stamp}_joblib_{options.n_jobs}", ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={options.n_jobs}"],
            sweep, options.root),
    ]  # fmt: skip
    print(f"sweep: {' '.join(sweep)}; {os.cpu_count()} cores")
    for r in results:
        print(
            f"{r['name']:<36} exit {r['code']}  wall {r['wall']:7.1f} s  jobs {r['jobs']}  reached {r['reached']}  "
            f"time to target median {r['median']:.3f} s, sum {r['sum']:.1f} s  "
            f"load {r['load'][0]:.1f} -> {r['load'][1]:.1f}"
        )
    base, parallel = results
    print(f"joblib / basic: wall x {parallel['wall'] / base['wall']:.2f}, "
          f"median time to target x {parallel['median'] / base['median']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
