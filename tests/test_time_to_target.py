"""The time-to-target measurement: right step / epoch / samples, training time only, stop at the target."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn

from trainspeed.callbacks import train_clock
from trainspeed.callbacks.divergence import DivergenceGuard
from trainspeed.callbacks.time_to_target import TimeToTarget
from trainspeed.callbacks.train_clock import TrainClock
from trainspeed.data import build_datamodule
from trainspeed.data.index_loader import IndexBatchLoader
from trainspeed.model import build_network
from trainspeed.options import metric_mode
from trainspeed.training.classifier import Classifier
from trainspeed.training.trainer_factory import build_trainer

QUIET = dict(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
             enable_model_summary=False)  # fmt: skip


class FakeClock:
    """Stands in for time.perf_counter: training steps take 1 s, a validation pass 100 s."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedModule(pl.LightningModule):
    """Trains a real linear layer; each validation reports the next value of a scripted metric sequence."""

    def __init__(self, clock: FakeClock, sequence: list[float], loss_after: float | None = None):
        super().__init__()
        self.layer = nn.Linear(2, 2)
        self.clock, self.sequence, self.loss_after = clock, list(sequence), loss_after
        self.validations = 0

    def training_step(self, batch, batch_idx):
        self.clock.now += 1.0
        x, y = batch
        loss = nn.functional.cross_entropy(self.layer(x), y)
        logged = torch.tensor(float("nan")) if self.loss_after is not None and self.global_step >= 3 else loss
        self.log("train/loss", logged.detach(), on_step=True, on_epoch=False)  # what the guard reads
        return loss

    def validation_step(self, batch, batch_idx):
        self.clock.now += 100.0  # evaluation "sleeps": it must not count

    def on_validation_epoch_end(self):
        value = self.sequence[min(self.validations, len(self.sequence) - 1)]
        self.validations += 1
        self.log("val/acc", value)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(monkeypatch, sequence, n, batch_size, stop, **trainer_kwargs):
    clock = FakeClock()
    monkeypatch.setattr(train_clock.time, "perf_counter", clock)
    x, y = torch.randn(n, 2), torch.randint(0, 2, (n,))
    train = IndexBatchLoader(x, y, batch_size, shuffle=True, seed=0)
    val = IndexBatchLoader(x[:4], y[:4], 4, shuffle=False)
    timer = TrainClock()
    target = TimeToTarget(timer, "val/acc", 0.95, stop=stop)
    module = ScriptedModule(clock, sequence)
    trainer = pl.Trainer(
        **QUIET,
        num_sanity_val_steps=0,
        callbacks=[timer, target],
        **trainer_kwargs,
    )
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    return trainer, timer, target


def test_records_step_epoch_samples_and_training_seconds_only(monkeypatch):
    # 20 batches of 8 per epoch, validation every 5 steps; the target is first met at the 3rd validation
    trainer, timer, target = _fit(
        monkeypatch,
        [0.5, 0.9, 0.96, 0.97, 0.98],
        n=160,
        batch_size=8,
        stop=False,
        max_epochs=2,
        val_check_interval=5,
        check_val_every_n_epoch=None,
    )
    assert target.result == {
        "metric": "val/acc",
        "target": 0.95,
        "seconds": 15.0,
        "steps": 15,
        "epochs": 0.75,
        "samples": 120,
        "resolution_steps": 5,
    }
    assert timer.seconds == pytest.approx(40.0)  # 40 training steps; 8 validations x 100 s excluded
    assert trainer.global_step == 40 and target.best == pytest.approx(0.98)


def test_partial_last_batch_counts_real_samples_and_stop_ends_the_run(monkeypatch):
    # 21 samples in batches of 4: 6 steps per epoch, the last with 1 sample; validation at each epoch end
    trainer, timer, target = _fit(
        monkeypatch, [0.2, 0.96, 0.99], n=21, batch_size=4, stop=True, max_epochs=10
    )
    assert target.result["steps"] == 12 and target.result["epochs"] == 2.0 and target.result["samples"] == 42
    assert target.result["seconds"] == 12.0
    assert trainer.global_step == 12  # stopped at the target instead of running 10 epochs


def test_unreached_target_keeps_best_and_no_result(monkeypatch):
    _, _, target = _fit(monkeypatch, [0.5, 0.7, 0.6], n=16, batch_size=4, stop=True, max_epochs=3)
    assert target.result is None and target.best == pytest.approx(0.7)


def test_loss_metrics_count_down():
    assert metric_mode("val/loss") == "min" and metric_mode("val/acc") == "max"


def test_divergence_guard_stops_on_nan(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(train_clock.time, "perf_counter", clock)
    x, y = torch.randn(64, 2), torch.randint(0, 2, (64,))
    guard = DivergenceGuard(max_loss_ratio=10, patience=3)
    module = ScriptedModule(clock, [0.1], loss_after=3)
    trainer = pl.Trainer(
        **QUIET,
        log_every_n_steps=1,  # the module logs train/loss every step
        max_epochs=5,
        callbacks=[guard],
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=IndexBatchLoader(x, y, 4, shuffle=False))
    assert guard.diverged and "nan" in guard.reason
    assert trainer.global_step == 4  # stopped right after the first NaN loss


def test_divergence_guard_needs_patience_for_large_losses():
    guard = DivergenceGuard(max_loss_ratio=10, patience=3)
    for step, value in enumerate((1.0, 20.0, 20.0, 5.0, 20.0, 20.0)):
        assert not guard.check(value, step * 10)
    assert not guard.diverged  # the run recovered once (5.0) before the third strike
    assert guard.check(30.0, 60)
    assert guard.diverged and "stayed above 10 x the initial 1 for 3 checks (step 60)" in guard.reason


class Ticking(nn.Module):
    """A network whose every forward call takes 1 s on the fake clock."""

    def __init__(self, clock: FakeClock, network: nn.Module) -> None:
        super().__init__()
        self.clock, self.network = clock, network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += 1.0
        return self.network(x)


class SlowFramework(pl.Callback):
    """Lightning's per-iteration work around the steps, made slow: 100 s before and after every iteration."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock

    def on_train_batch_start(self, *args) -> None:
        self.clock.now += 100.0

    def on_train_batch_end(self, *args) -> None:
        self.clock.now += 100.0


def test_the_clock_counts_the_training_steps_and_nothing_around_them(monkeypatch, make_config):
    clock = FakeClock()
    monkeypatch.setattr(train_clock.time, "perf_counter", clock)
    cfg = make_config(
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "run_test=false", "logger=csv",
        "model.width=16", "trainer.max_steps=30", "trainer.max_epochs=-1", "trainer.val_check_interval=5",
        "trainer.check_val_every_n_epoch=null", "trainer.log_every_n_steps=3",
        "callbacks.resume_checkpoint.every_n_train_steps=7", "target.value=1.1",
    )  # fmt: skip
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network, _ = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    module = Classifier(Ticking(clock, network), cfg.optimizer, cfg.scheduler, datamodule.num_classes, 3)
    parts = build_trainer(cfg)
    parts.trainer.callbacks.append(SlowFramework(clock))
    logger = parts.trainer.loggers[0]
    log_metrics = logger.log_metrics

    def slow_log_metrics(*args, **kwargs):  # a logger that takes 100 s per call (the training window's too)
        clock.now += 100.0
        return log_metrics(*args, **kwargs)

    monkeypatch.setattr(logger, "log_metrics", slow_log_metrics)
    parts.trainer.fit(module, datamodule=datamodule)
    assert parts.trainer.global_step == 30
    # one forward per step is training; the warm-up, validation, logging, checkpoints and hooks are not
    assert parts.clock.seconds == 30.0
    assert clock.now > 30 * 100


def test_best_checkpoint_keeps_the_lowest_loss_when_the_target_is_a_loss(make_config):
    """checkpoints/best.ckpt followed `mode: max` whatever the target: with val/loss it kept the worst model."""
    import json
    from pathlib import Path

    from trainspeed.job import run_job

    cfg = make_config(
        "logger=csv", "trainer.enable_progress_bar=false", "run_test=false", "trainer.max_epochs=3",
        "target.metric=val/loss", "target.value=0.01",
    )  # fmt: skip
    run_job(cfg)
    run_dir = Path(cfg.hydra.runtime.output_dir)
    losses = [float(line.split(",")[-1]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]
              if line.split(",")[-1]]  # fmt: skip
    assert len(losses) == 3 and min(losses) < losses[0]
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    scores = [
        v["best_model_score"] for k, v in best["callbacks"].items() if "best" in str(v.get("best_model_path"))
    ]
    assert [float(s) for s in scores] == pytest.approx([min(losses)])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics"]["val/loss_best"] == pytest.approx(min(losses), abs=1e-6)
