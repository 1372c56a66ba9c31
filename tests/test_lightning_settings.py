"""Settings that reach Lightning: the default callbacks run without a logger, and Lightning's refusals name the
setting at fault."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from conftest import CONF, run_cli
from lightning_fabric.utilities.exceptions import MisconfigurationException

from trainspeed.errors import ConfigError
from trainspeed.job import run_job
from trainspeed.lightning_refusal import refusal_message
from trainspeed.training.trainer_factory import build_trainer
from trainspeed.validation import validate

QUIET = ["trainer.max_epochs=1", "trainer.enable_progress_bar=false", "run_test=false"]


def test_logger_none_runs_with_the_default_callbacks(make_config):
    cfg = make_config("logger=none", *QUIET)
    summary = run_job(cfg)
    assert summary.status == "completed" and summary.steps == 20
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


@pytest.mark.parametrize(
    "overrides", [["debug=fast"], ["callbacks=none"]], ids=["debug_fast", "callbacks_none"]
)
def test_no_checkpoint_is_written_where_the_config_says_none(make_config, overrides):
    """debug=fast ("no logs, no checkpoints") and callbacks=none (no checkpoint callback) write no .ckpt at all:
    not Lightning's save_last at the end of a fast_dev_run, nor its own default epoch=…-step=….ckpt."""
    cfg = make_config("logger=csv", *QUIET, *overrides)
    assert run_job(cfg).status == "completed"
    assert sorted(Path(cfg.hydra.runtime.output_dir).rglob("*.ckpt")) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU: 16-mixed runs there")
@pytest.mark.parametrize("trainer", ["trainer=default", "trainer=cpu"])
def test_gpu_only_precision_is_refused_on_a_cpu_only_machine_with_any_trainer(make_config, trainer):
    cfg = make_config(trainer, "trainer.precision=16-mixed")
    with pytest.raises(ConfigError) as refused:
        validate(cfg)
    assert (refused.value.key, refused.value.value) == ("trainer.precision", "16-mixed")
    assert "accepted: 32-true, bf16-mixed, bf16-true or 64-true on the CPU" in str(refused.value)


def test_help_lists_only_config_groups(tmp_path):
    result = run_cli(["trainspeed.train", "--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    groups = result.stdout.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0].strip() for line in groups.splitlines() if ":" in line}
    assert listed == {path.name for path in CONF.iterdir() if path.is_dir() and path.name != "hydra"}
    assert "wandb_sweep" not in result.stdout


def test_ddp_sync_dist_advice_is_silenced_only_for_metrics_reduced_already():
    """Under DDP Lightning advises sync_dist=True for every epoch-level value; trainspeed's are torchmetrics
    results (reduced across processes by compute()) or rank zero's clock. Advice about any other name stays."""
    import warnings

    from pytorch_lightning.utilities.rank_zero import rank_zero_warn

    from trainspeed.quiet import quiet_library_noise

    advice = "It is recommended to use `self.log('{}', ..., sync_dist=True)` when logging on epoch level."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_library_noise()
        for name in ("val/acc", "val/loss", "val/acc_best", "test/acc", "time/train_seconds", "my/metric"):
            rank_zero_warn(advice.format(name))
    assert [str(w.message) for w in caught] == [advice.format("my/metric")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU: kron compiles there")
@pytest.mark.parametrize("name", ["kron", "kronw"])
def test_kron_is_refused_before_training_on_the_cpu(make_config, name):
    """timm's kron torch.compiles its update; on the CPU the process was killed for memory after about a minute."""
    cfg = make_config("optimizer=timm", f"optimizer.name={name}")
    with pytest.raises(ConfigError) as refused:
        validate(cfg)
    assert (refused.value.key, refused.value.value) == ("optimizer.name", name)
    assert "torch.compile" in str(refused.value) and "trainer=gpu" in str(refused.value)


def test_vit_on_small_images_names_the_patch_size_and_a_fix_that_builds(make_config):
    """A ViT's 16-pixel patches do not fit 8x8 digits: the message says so, and its first fix validates and
    builds a network that takes the images (the old hint, +model.kwargs.img_size=8 alone, failed again)."""
    from trainspeed.model import build_network

    vit = ["model=timm", "model.name=vit_tiny_patch16_224"]
    with pytest.raises(ConfigError) as refused:
        validate(make_config(*vit))
    message = str(refused.value)
    assert "cuts images into 16x16 patches, larger than the 8x8 images" in message
    fix = message.split("accepted: ")[1].split(" (")[0].split()
    assert fix == ["+model.kwargs.img_size=8", "+model.kwargs.patch_size=2"]
    cfg = make_config(*vit, *fix)
    validate(cfg)
    network, _ = build_network(cfg, (1, 8, 8), 10)
    assert network(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
