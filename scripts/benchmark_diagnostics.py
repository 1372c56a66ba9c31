"""What do the layer diagnostics and W&B's watch cost per training step? Measured in one process.

    .venv/bin/python scripts/benchmark_diagnostics.py [--steps 600] [--repeats 3]

trainspeed's training path (Lightning Trainer, Classifier, training clock, time-to-target, divergence guard) on the
digits MLP 64-256-256-10, batch 64, Adam, timed by the training clock: without diagnostics, with
LayerDiagnostics every 10 steps (the default) and every step (the worst case), and with a W&B run (offline)
without and with `watch` (gradients / all, every 100 steps). Prints milliseconds per step (best of --repeats, the
variants interleaved) and the ratio to the run without them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import warnings
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from trainspeed.callbacks.diagnostics import LayerDiagnostics
from trainspeed.callbacks.divergence import DivergenceGuard
from trainspeed.callbacks.time_to_target import TimeToTarget
from trainspeed.callbacks.train_clock import TrainClock
from trainspeed.data import build_datamodule
from trainspeed.model import build_network
from trainspeed.quiet import quiet_library_noise
from trainspeed.tracking.wandb_logger import WandbRunLogger
from trainspeed.training.classifier import Classifier

CFG = OmegaConf.create(
    {
        "data": {
            "name": "digits",
            "batch_size": 64,
            "eval_batch_size": 1024,
            "image_size": None,
            "val_fraction": 0.15,
            "test_fraction": 0.15,
            "classes": None,
        },
        "model": {"family": "mlp", "depth": 2, "width": 256, "dropout": 0.0},
        "activation": {"name": "relu"},
        "normalization": {"name": "none"},
        "initializer": {"name": "default"},
        "optimizer": {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0},
        "scheduler": {"name": "none"},
    }
)


def timed_run(steps: int, extra: Callable[[str], tuple[list, list]]) -> float:
    """Seconds per step by the training clock; `extra(folder)` gives (callbacks, loggers) to add."""
    torch.manual_seed(0)
    dm = build_datamodule(CFG.data, seed=0)
    network = build_network(CFG, dm.input_shape, dm.num_classes)[0]
    module = Classifier(network, CFG.optimizer, CFG.scheduler, dm.num_classes, log_every_n_steps=10)
    clock = TrainClock()
    with tempfile.TemporaryDirectory() as folder:
        callbacks, loggers = extra(folder)
        trainer = pl.Trainer(
            accelerator="cpu",
            max_steps=steps,
            logger=loggers or False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            log_every_n_steps=10,
            callbacks=[clock, TimeToTarget(clock, "val/acc", 0.95), DivergenceGuard(), *callbacks],
        )
        trainer.fit(module, datamodule=dm)
        for logger in loggers:
            logger.finish_run({"status": "completed", "reached_target": False})
    return clock.seconds / trainer.global_step


def wandb_logger(folder: str, watch: str | None) -> WandbRunLogger:
    logger = WandbRunLogger(save_dir=folder, mode="offline", watch=watch, watch_log_freq=100)
    logger.describe_job(CFG)
    return logger


VARIANTS: dict[str, Callable[[str], tuple[list, list]]] = {
    "no diagnostics (baseline)": lambda d: ([], []),
    "diagnostics every 10 steps": lambda d: ([LayerDiagnostics(d, every_n_steps=10)], []),
    "diagnostics every step": lambda d: ([LayerDiagnostics(d, every_n_steps=1)], []),
    "W&B offline, no watch": lambda d: ([], [wandb_logger(d, None)]),
    "W&B offline, watch=gradients": lambda d: ([], [wandb_logger(d, "gradients")]),
    "W&B offline, watch=all": lambda d: ([], [wandb_logger(d, "all")]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_library_noise()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("WANDB_SILENT", "true")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, best of {args.repeats}")
    timed_run(100, VARIANTS["no diagnostics (baseline)"])  # warm-up
    best = dict.fromkeys(VARIANTS, float("inf"))
    for _ in range(args.repeats):  # interleaved, so that a busy moment of the machine hits every variant alike
        for name, fn in VARIANTS.items():
            best[name] = min(best[name], timed_run(args.steps, fn))
    for name, seconds in best.items():
        base = best["no diagnostics (baseline)" if "W&B" not in name else "W&B offline, no watch"]
        print(f"{name:32s} {seconds * 1e3:7.3f} ms/step   x{seconds / base:5.2f}")


if __name__ == "__main__":
    main()
