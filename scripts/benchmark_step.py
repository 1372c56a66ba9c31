"""How much does trainspeed add to a training step? Ratios against plain PyTorch, measured in one process.

    .venv/bin/python scripts/benchmark_step.py [--steps 600] [--repeats 3]

Baseline: a hand-written PyTorch loop (index-batched tensors, Adam) on the digits MLP 64-256-256-10, batch 64.
Compared: the same loop over a torch DataLoader(TensorDataset) and trainspeed's full training path (Lightning
Trainer, Classifier, training clock, time-to-target, divergence guard, metrics logged every 10 steps), timed by
trainspeed's own training clock. Prints milliseconds per step (best of --repeats) and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from trainspeed.callbacks.divergence import DivergenceGuard
from trainspeed.callbacks.time_to_target import TimeToTarget
from trainspeed.callbacks.train_clock import TrainClock
from trainspeed.data import build_datamodule
from trainspeed.model import build_network
from trainspeed.quiet import quiet_library_noise
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


def _network_and_data():
    torch.manual_seed(0)
    dm = build_datamodule(CFG.data, seed=0)
    return build_network(CFG, dm.input_shape, dm.num_classes)[0], dm


def plain_loop(steps: int, use_dataloader: bool) -> float:
    """Seconds per step of a plain PyTorch training loop."""
    network, dm = _network_and_data()
    x, y = dm.splits.train
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    if use_dataloader:
        loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    else:
        loader = None
    done, start = 0, time.perf_counter()
    while done < steps:
        if loader is not None:
            batches = iter(loader)
        else:
            order = torch.randperm(len(y))
            batches = ((x[order[i : i + 64]], y[order[i : i + 64]]) for i in range(0, len(y), 64))
        for xb, yb in batches:
            loss = F.cross_entropy(network(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return (time.perf_counter() - start) / steps


def trainspeed_loop(steps: int) -> float:
    """Seconds per step of trainspeed's training path, by its own training clock."""
    network, dm = _network_and_data()
    module = Classifier(network, CFG.optimizer, CFG.scheduler, dm.num_classes, log_every_n_steps=10)
    clock = TrainClock()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        log_every_n_steps=10,
        callbacks=[clock, TimeToTarget(clock, "val/acc", 0.95), DivergenceGuard()],
    )
    trainer.fit(module, datamodule=dm)
    return clock.seconds / trainer.global_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    quiet_library_noise()
    warnings.filterwarnings("ignore")
    os.environ.setdefault("PL_DISABLE_FORK", "1")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, best of {args.repeats}"
    )
    runs = {
        "plain PyTorch, index batches (baseline)": lambda: plain_loop(args.steps, use_dataloader=False),
        "plain PyTorch, DataLoader(TensorDataset)": lambda: plain_loop(args.steps, use_dataloader=True),
        "trainspeed (Lightning + clock + metrics)": lambda: trainspeed_loop(args.steps),
    }
    plain_loop(100, use_dataloader=False)  # warm-up: first-call allocations and kernels
    best = {name: min(fn() for _ in range(args.repeats)) for name, fn in runs.items()}
    baseline = next(iter(best.values()))
    for name, seconds in best.items():
        print(f"{name:44s} {seconds * 1e3:7.3f} ms/step   x{seconds / baseline:5.2f}")


if __name__ == "__main__":
    main()
