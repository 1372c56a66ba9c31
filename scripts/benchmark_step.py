"""How fast is a trainspeed training step next to a hand-written PyTorch loop? Measured in one process.

    .venv/bin/python scripts/benchmark_step.py [--repeats 5] [--cases mlp,cnn,resnet18] [--threads N]
        [--accelerators cpu,gpu] [--fairness PROCESSES] [--quick]

For each case the same network (built by trainspeed's builders from the same seed) trains on the same data for the
same number of optimizer steps, three ways:
  (a) plain   a PyTorch loop written here: index-batched tensors, zero_grad / forward / backward / step
  (b) lean    trainspeed (Lightning Trainer, Classifier, clock, time-to-target, divergence guard) with loggers,
              callbacks and progress bar off
  (c) default trainspeed with its defaults: csv + W&B (offline) loggers, checkpoints, progress bar
(b) and (c) are timed by trainspeed's own training clock (what summary.json reports as train_seconds); (a) by the
wall clock around its loop. Warm-up is excluded: every case runs once untimed first, and the clock starts after
trainspeed's own warm-up. The three run in turn, --repeats rounds; each figure is the median with the min-max
spread; the ratios are the plain loop's speed over trainspeed's (1.00 = as fast as the plain loop), the median of
the ratios within a round. CUDA cases (fp32 and bf16, GPU_STEPS times the steps) run when a GPU is present;
there each trainspeed run's clock is also compared with CUDA events of its own around the same training steps
(goal: within 2 %) and around whole Lightning iterations.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from trainspeed import job  # noqa: E402
from trainspeed.callbacks import train_clock  # noqa: E402
from trainspeed.config_paths import compose_run_config  # noqa: E402
from trainspeed.data import build_datamodule  # noqa: E402
from trainspeed.data.index_loader import IndexBatchLoader  # noqa: E402
from trainspeed.job import run_job  # noqa: E402
from trainspeed.model import build_network  # noqa: E402
from trainspeed.optim.optimizers import build_optimizer  # noqa: E402
from trainspeed.quiet import quiet_library_noise  # noqa: E402
from trainspeed.training.trainer_factory import build_trainer  # noqa: E402

SYNTHETIC = ["data=synthetic", "data.shape=[3,32,32]", "data.batch_size=64", "data.num_samples=2048"]
CASES = {  # name: (overrides, optimizer steps)
    "mlp": (["data=digits", "model=mlp"], 600),
    "cnn": ([*SYNTHETIC, "model=cnn"], 150),
    "resnet18": ([*SYNTHETIC, "model=timm", "model.name=resnet18"], 30),
}
# a GPU step is 10-100x shorter than a CPU step: its cases run this many times the steps, so that each timed run
# lasts long enough (0.6-2.6 s on an H100, by its step times at batch 64) for one host hiccup not to move the figure
# much, while 6 rounds of every GPU case (5 for an interval, one untimed) and the warm-up fairness fit the 7 minutes
# that scripts/gpu_checks.sh gives the benchmark (6.4 minutes on an H200)
GPU_STEPS = 2
LEAN = [
    "logger=none",
    "callbacks=none",
    "trainer.enable_progress_bar=false",
    "trainer.enable_checkpointing=false",
]
# the speed goals, relative to the plain loop: (b) lean and (c) defaults
GOALS = {"a/b": 0.95, "a/c": 0.90}
MIN_COVERAGE = 0.9  # an interval that covers the median less often than this decides no goal
COMMON = ["run_test=false", "seed=0", "target.value=0.999", "trainer.max_epochs=-1", "optimizer=adam"]


def compose_config(overrides: list[str], run_dir: Path):
    """The config `python -m trainspeed.train <overrides>` would run with, writing into run_dir."""
    return compose_run_config(overrides, run_dir, job_name="benchmark")


def plain_loop(cfg, steps: int) -> float:
    """Seconds per step of a hand-written loop over the same network, data, optimizer and batch order."""
    torch.manual_seed(cfg.seed)
    dm = build_datamodule(cfg.data, cfg.seed)
    device = torch.device("cuda" if cfg.trainer.accelerator == "gpu" else "cpu")
    network = build_network(cfg, dm.input_shape, dm.num_classes)[0].to(device)
    optimizer = build_optimizer(cfg.optimizer, network)
    x, y = (t.to(device) for t in dm.splits.train)
    loader = IndexBatchLoader(x, y, int(cfg.data.batch_size), shuffle=True, seed=cfg.seed)
    bf16 = cfg.trainer.precision == "bf16-mixed"
    network.train()

    def run(n: int) -> None:
        done = 0
        while done < n:
            for xb, yb in loader:
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(network(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                done += 1
                if done == n:
                    return
            loader.sampler.set_epoch(loader.sampler.epoch + 1)

    run(3)  # warm-up, as trainspeed does before its clock starts
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = train_clock.time.perf_counter()  # the training clock's own timer (see --timer)
    run(steps)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (train_clock.time.perf_counter() - start) / steps


class CudaEventTimer(pl.Callback):
    """Independent CUDA-event readings of the steps the training clock times, on the device's own timeline:
    - `step`: around each call of the module's training_step, less the spans around its training-window logging
      (which the clock leaves out too): the same steps the clock times, read by events of their own;
    - `iteration`: from on_train_batch_start to on_train_batch_end, which adds Lightning's per-iteration work."""

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[torch.cuda.Event, torch.cuda.Event]]] = {
            "step": [],
            "logging": [],
            "iteration": [],
        }
        self._start: torch.cuda.Event | None = None

    @staticmethod
    def _event() -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def on_train_start(self, trainer, pl_module) -> None:
        # instance attributes: Lightning and the module call them in place of the methods
        pl_module.training_step = self._timed(pl_module.training_step, "step")
        if hasattr(pl_module, "_log_train_window"):
            pl_module._log_train_window = self._timed(pl_module._log_train_window, "logging")

    def _timed(self, method, kind: str):
        def timed(*args, **kwargs):
            start = self._event()
            try:
                return method(*args, **kwargs)
            finally:
                self.spans[kind].append((start, self._event()))

        return timed

    def on_train_batch_start(self, *args) -> None:
        self._start = self._event()

    def on_train_batch_end(self, *args) -> None:
        self.spans["iteration"].append((self._start, self._event()))

    def seconds(self, kind: str) -> float:
        torch.cuda.synchronize()
        total = sum(start.elapsed_time(end) for start, end in self.spans[kind]) / 1e3
        return total - self.seconds("logging") if kind == "step" else total


# clock seconds over CUDA-event seconds, per GPU run of trainspeed
EVENT_READINGS: dict[str, list[float]] = {"step": [], "iteration": []}


def trainspeed_run(overrides: list[str], steps: int, folder: Path) -> float:
    """Seconds per optimizer step by trainspeed's training clock (on a GPU, also checked against CUDA events)."""
    run_dir = Path(tempfile.mkdtemp(dir=folder))
    cfg = compose_config([*overrides, f"trainer.max_steps={steps}"], run_dir)
    if cfg.trainer.accelerator != "gpu":
        summary = run_job(cfg)
    else:
        timer = CudaEventTimer()

        def with_timer(*args, **kwargs):
            parts = build_trainer(*args, **kwargs)
            parts.trainer.callbacks.append(timer)
            return parts

        job.build_trainer = with_timer
        try:
            summary = run_job(cfg)
        finally:
            job.build_trainer = build_trainer
        for kind, readings in EVENT_READINGS.items():
            readings.append(summary.train_seconds / timer.seconds(kind))
    assert summary.steps == steps, summary
    return summary.train_seconds / summary.steps


def measure(fns: list, repeats: int) -> tuple[list[tuple[float, float, float]], list[list[float]]]:
    """Each fn once untimed (first-call costs of its configuration), then `repeats` rounds of all of them, in turn
    and in alternating order (a b c, c b a, ...), so that a drift in the machine's speed touches every variant
    alike. Returns (median, min, max) per fn and, per fn, the first fn's time over its own in each round (the
    paired ratios)."""
    for fn in fns:
        fn()
    rounds = []
    for r in range(repeats):
        order = range(len(fns)) if r % 2 == 0 else reversed(range(len(fns)))
        times = {i: fns[i]() for i in order}
        rounds.append([times[i] for i in range(len(fns))])
    columns = list(zip(*rounds, strict=True))
    stats = [(statistics.median(c), min(c), max(c)) for c in columns]
    ratios = [[r[0] / r[i] for r in rounds] for i in range(len(fns))]
    return stats, ratios


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(low, high, coverage): the narrowest interval between order statistics, [x(k), x(n+1-k)], that covers the
    median of the values' distribution with at least `confidence`; with too few values for that, [min, max] and
    its lower coverage. Distribution-free (the number of values below the median is Binomial(n, 1/2)), so it
    holds for the skewed timing noise of a shared machine, where a bootstrap of 5-9 rounds would be optimistic."""
    xs, n = sorted(values), len(values)

    def coverage(k: int) -> float:
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    k = 1
    while k < n // 2 and coverage(k + 1) >= confidence:
        k += 1
    return xs[k - 1], xs[n - k], coverage(k)


def verdict(low: float, high: float, coverage: float, goal: float) -> str:
    """met: the median's whole interval is at or above the goal; missed: all of it below; else undecided. Fewer
    than 5 rounds give no interval worth the name (4 rounds: 87.5 % coverage)."""
    if coverage < MIN_COVERAGE:
        return "too few rounds"
    return "met" if low >= goal else "missed" if high < goal else "undecided"


def fairness_jobs(overrides: list[str], steps: int, jobs: int, folder: Path) -> list[float]:
    """Seconds per step of `jobs` identical jobs (configuration and seed) run one after another in this process,
    as in one sweep process."""
    return [trainspeed_run(overrides, steps, folder) for _ in range(jobs)]


def warm_up_fairness(args: argparse.Namespace, accelerator: str, processes: int, jobs: int) -> None:
    """The first job of a fresh process against the later jobs of the same process: one-time costs (lazy imports,
    first kernels, allocator growth) must not land on the first job only. Each process is a fresh interpreter;
    the machine's run-to-run noise is why there are several."""
    command = [sys.executable, __file__, "--fairness-child", str(jobs), "--cases", args.cases.split(",")[0]]
    command += ["--accelerators", accelerator]
    command += [
        "--steps-factor",
        str(args.steps_factor),
        *(["--threads", str(args.threads)] if args.threads else []),
    ]
    command += ["--timer", args.timer, "--extra", *args.extra]
    ratios = []
    for _ in range(processes):
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        times = json.loads(next(line for line in reversed(done.stdout.splitlines()) if line.startswith("[")))
        ratios.append(times[0] / statistics.median(times[1:]))
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"warm-up fairness, {accelerator} ({processes} fresh processes x {jobs} identical jobs): first job over the "
        f"median later job, median over processes {statistics.median(ratios):.2f} (each: {each})",
        flush=True,
    )


def case_steps(steps: int, accelerator: str, args: argparse.Namespace) -> int:
    """A case's optimizer steps on this accelerator, scaled by --steps-factor."""
    return max(int(steps * args.steps_factor * (GPU_STEPS if accelerator == "gpu" else 1)), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--steps-factor", type=float, default=1.0, help="scale every case's step count")
    parser.add_argument("--quick", action="store_true", help="a tiny run (MLP, 20 steps, 1 repeat) for tests")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument(
        "--timer",
        choices=("wall", "thread"),
        default="wall",
        help="thread: CPU seconds of the training thread instead of wall seconds, for a machine shared with other "
        "work (use with --threads 1, so that all compute runs in that thread)",
    )
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for both trainspeed runs")
    parser.add_argument(
        "--fairness",
        type=int,
        default=3,
        metavar="PROCESSES",
        help="fresh processes for the first-job-against-later-jobs check (0: skip it)",
    )
    parser.add_argument("--fairness-child", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--accelerators",
        default="cpu,gpu" if torch.cuda.is_available() else "cpu",
        help="comma-separated: cpu, gpu (gpu runs fp32 and bf16-mixed; default: gpu too when one is present)",
    )
    args = parser.parse_args()
    if args.quick:
        args.cases, args.repeats, args.steps_factor = "mlp", 1, 20 / CASES["mlp"][1]
        args.fairness = min(args.fairness, 1)
    accelerators = args.accelerators.split(",")
    precisions = {"cpu": ["32-true"], "gpu": ["32-true", "bf16-mixed"]}
    unknown = [a for a in accelerators if a not in precisions]
    if unknown:
        parser.error(f"--accelerators {args.accelerators}: unknown {unknown}; accepted: cpu, gpu")
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        parser.error(f"--cases {args.cases}: unknown {unknown}; accepted: {', '.join(CASES)}")
    if "gpu" in accelerators and not torch.cuda.is_available():
        parser.error("--accelerators gpu: no GPU is available to torch here")
    # refusals first: only a run that goes ahead changes the process's settings
    if args.threads:
        torch.set_num_threads(args.threads)
    if (
        args.timer == "thread"
    ):  # both the plain loop and trainspeed's clock read train_clock.time.perf_counter
        train_clock.time = SimpleNamespace(perf_counter=time.thread_time)
    quiet_library_noise()
    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning_fabric", "trainspeed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    devices = [
        (accelerator, precision) for accelerator in accelerators for precision in precisions[accelerator]
    ]
    if args.fairness_child:  # one process of warm_up_fairness: the first case with trainspeed's defaults
        overrides, steps = CASES[args.cases]
        device = [f"trainer.accelerator={accelerators[0]}", "trainer.devices=1"]
        with tempfile.TemporaryDirectory() as tmp:
            times = fairness_jobs([*COMMON, *overrides, *device, *args.extra], case_steps(steps, accelerators[0], args),
                                  args.fairness_child, Path(tmp))  # fmt: skip
        print(json.dumps(times))
        return
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, {args.timer} time, "
        f"median of {args.repeats} (min-max)"
    )
    header = (
        f"{'case':22s} {'steps':>5s} {'(a) plain':>20s} {'(b) lean':>20s} {'(c) default':>20s}  "
        f"{'a/b [interval] goal':27s}  a/c [interval] goal"
    )
    with tempfile.TemporaryDirectory() as tmp:
        print(header)
        for accelerator, precision in devices:
            for case in args.cases.split(","):
                overrides, steps = CASES[case]
                steps = case_steps(steps, accelerator, args)
                device = [
                    f"trainer.accelerator={accelerator}",
                    "trainer.devices=1",
                    f"trainer.precision={precision}",
                ]
                base = [*COMMON, *overrides, *device, *args.extra]
                cfg = compose_config([*base, f"trainer.max_steps={steps}"], Path(tmp))
                stats, ratios = measure(
                    [
                        lambda cfg=cfg, steps=steps: plain_loop(cfg, steps),
                        lambda base=base, steps=steps: trainspeed_run([*base, *LEAN], steps, Path(tmp)),
                        lambda base=base, steps=steps: trainspeed_run(base, steps, Path(tmp)),
                    ],
                    args.repeats,
                )
                label = f"{case} {accelerator}" + (" bf16" if precision.startswith("bf16") else "")
                cells = " ".join(f"{m * 1e3:7.3f} ({lo * 1e3:.3f}-{hi * 1e3:.3f})" for m, lo, hi in stats)
                judged = []
                for goal, paired in zip(GOALS.values(), ratios[1:], strict=True):
                    low, high, coverage = median_interval(paired)
                    judged.append(
                        f"{statistics.median(paired):.2f} [{low:.2f}-{high:.2f}] {verdict(low, high, coverage, goal)}"
                    )
                print(f"{label:22s} {steps:5d} {cells}  {'  '.join(judged)}", flush=True)
                for kind, readings in EVENT_READINGS.items():
                    if readings:
                        readings.sort()
                        print(
                            f"{'':22s} clock / CUDA events around each {'training step' if kind == 'step' else 'iteration'}: "
                            f"median {statistics.median(readings):.3f} ({readings[0]:.3f}-{readings[-1]:.3f}, "
                            f"{len(readings)} runs)",
                            flush=True,
                        )
                        readings.clear()
    # after the table: a run stopped by a time limit (scripts/gpu_checks.sh) keeps the speed rows, the main figures
    if args.fairness:
        for accelerator in accelerators:
            warm_up_fairness(args, accelerator, args.fairness, max(args.repeats, 2))
    low, high, coverage = median_interval([1.0] * args.repeats)
    print(
        "ms/step; a/b and a/c: the plain loop's step time over trainspeed's (speed relative to the plain loop),\n"
        "the median over rounds of the ratio within a round (a, b and c run in turn in each round), with the\n"
        f"distribution-free interval of that median ({coverage:.1%} coverage at {args.repeats} rounds) and the\n"
        f"goal's verdict: a/b >= {GOALS['a/b']:.2f}, a/c >= {GOALS['a/c']:.2f} met (whole interval at or above), "
        "missed (all below) or undecided\n(more rounds needed; at least 5 rounds for a verdict)"
    )


if __name__ == "__main__":
    main()
