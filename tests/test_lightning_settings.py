"""Settings that reach Lightning: the default callbacks run without a logger, and Lightning's refusals name the
setting at fault."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from lightning_fabric.utilities.exceptions import MisconfigurationException

from trainspeed.job import run_job
from trainspeed.lightning_refusal import refusal_message
from trainspeed.training.trainer_factory import build_trainer

QUIET = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "run_test=false"]


def test_logger_none_runs_with_the_default_callbacks(make_config):
    cfg = make_config("logger=none", *QUIET)
    summary = run_job(cfg)
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert (
        json.loads((Path(cfg.hydra.runtime.output_dir) / "summary.json").read_text())["status"] == "completed"
    )


def test_the_learning_rate_is_logged_once_as_lr(make_config):
    cfg = make_config("logger=csv", "optimizer=sgd", "optimizer.lr=0.05", *QUIET)
    run_job(cfg)
    with open(Path(cfg.hydra.runtime.output_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [key for key in rows[0] if key.startswith("lr")] == ["lr"]
    assert [float(row["lr"]) for row in rows if row["lr"]] == pytest.approx([0.05, 0.05])  # steps 10 and 20


def _refusal(cfg, fit: bool) -> MisconfigurationException:
    with pytest.raises(MisconfigurationException) as raised:
        run_job(cfg) if fit else build_trainer(cfg)
    return raised.value


def test_a_callback_that_needs_a_logger_is_named_with_the_logger_setting(make_config):
    target = "+callbacks.lr_monitor._target_=pytorch_lightning.callbacks.LearningRateMonitor"
    cfg = make_config("logger=none", target, *QUIET)
    message = refusal_message(_refusal(cfg, fit=True), cfg)
    assert message.startswith("Lightning refused callbacks.lr_monitor (LearningRateMonitor), logger=none: ")
    assert "trainer." not in message.split(":")[0]


@pytest.mark.parametrize(
    ("overrides", "fit", "named"),
    [
        (["trainer.accelerator=mps"], False, "trainer.accelerator=mps"),
        (["trainer.accelerator=cpu", "trainer.devices=0"], False, "trainer.devices=0"),
        (["trainer.limit_train_batches=0.0001"], True, "trainer.limit_train_batches=0.0001"),
    ],
)
def test_lightning_refusals_name_the_trainer_setting_at_fault(make_config, overrides, fit, named):
    cfg = make_config("logger=csv", *overrides, *QUIET)
    message = refusal_message(_refusal(cfg, fit), cfg)
    at_fault = message.split(": ")[0]
    assert at_fault == f"Lightning refused {named}", message
