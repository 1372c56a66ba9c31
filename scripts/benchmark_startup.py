"""Start-up cost: a one-step training run, whole process, against `python -c "import torch, pytorch_lightning"`.

    python scripts/benchmark_startup.py [--runs 5] [--cases default,csv] [--imports] [extra overrides ...]

Each repeat launches, in turn, the baseline and one one-step run per case (`python -m trainspeed.train
trainer.max_steps=1`, the default config, then with `logger=csv`) as fresh processes, so that a load change on the
machine affects every case alike. It prints the median wall time (min-max) of each and its ratio to the baseline's
median. `--imports` also lists the packages each run imports beyond the baseline, with their import time.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BASELINE = [sys.executable, "-c", "import torch, pytorch_lightning"]
CASES = {"default": [], "csv": ["logger=csv"]}
ONE_STEP = ["trainer.max_steps=1"]


def timed(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one fresh process; a failing run stops the benchmark with its output."""
    started = time.perf_counter()
    result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(args)} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def run_args(case: str, run_dir: Path, overrides: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trainspeed.train",
        *ONE_STEP,
        *CASES[case],
        *overrides,
        f"hydra.run.dir={run_dir}",
    ]


def imported(args: list[str], env: dict[str, str]) -> Counter[str]:
    """Self import seconds per top-level package (`python -X importtime`)."""
    result = subprocess.run([args[0], "-X", "importtime", *args[1:]], env=env, capture_output=True, text=True)
    seconds: Counter[str] = Counter()
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*([\w.]+)$", line)
        if match:
            seconds[match.group(2).split(".")[0]] += int(match.group(1)) / 1e6
    return seconds


def print_imports(cases: list[str], overrides: list[str], env: dict[str, str], root: Path) -> None:
    baseline = imported(BASELINE, env)
    for case in cases:
        extra = imported(run_args(case, root / f"imports_{case}", overrides), env) - baseline
        beyond = {name: s for name, s in extra.items() if name not in baseline}
        top = sorted(beyond.items(), key=lambda item: -item[1])[:12]
        print(f"{case}: imports beyond the baseline {sum(beyond.values()):.2f} s: "
              + ", ".join(f"{name} {s:.2f}" for name, s in top))  # fmt: skip


def summary(times: list[float]) -> str:
    return f"{statistics.median(times):6.2f} ({min(times):.2f}-{max(times):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="repeats of every case (median)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--imports", action="store_true", help="also list the imports beyond the baseline")
    options, overrides = parser.parse_known_args()
    cases = options.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; accepted: {', '.join(CASES)}")
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {"baseline": [], **{case: [] for case in cases}}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="benchmark_startup_") as tmp:
        root = Path(tmp)
        for repeat in range(options.runs):
            times["baseline"].append(timed(BASELINE, env))
            for case in cases:
                times[case].append(timed(run_args(case, root / f"{case}_{repeat}", overrides), env))
        base = statistics.median(times["baseline"])
        print(f"{os.cpu_count()} CPUs, {options.runs} runs each, load {load:.1f} -> {os.getloadavg()[0]:.1f}; "
              f"seconds per process, median (min-max)")  # fmt: skip
        print(f"{'case':<48} {'seconds':>20}  ratio")
        print(f"{'baseline: import torch, pytorch_lightning':<48} {summary(times['baseline']):>20}   1.00")
        for case in cases:
            label = f"one step, {case}: {' '.join(ONE_STEP + CASES[case] + overrides)}"
            print(f"{label:<48} {summary(times[case]):>20}  {statistics.median(times[case]) / base:5.2f}")
        if options.imports:
            print_imports(cases, overrides, env, root)


if __name__ == "__main__":
    main()
