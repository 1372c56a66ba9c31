"""Every option of every config group composes and builds; the technique options train a batch."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from conftest import CONF, FAST
from dataset_files import write_cifar10, write_image_folder, write_mnist

from trainspeed.data import build_datamodule
from trainspeed.model import build_network
from trainspeed.training.classifier import Classifier
from trainspeed.training.trainer_factory import build_trainer


def options(group: str) -> list[str]:
    """The options of a config group, as found in conf/ (not a hand-picked list)."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_groups_have_the_options_the_docs_promise():
    assert set(options("optimizer")) >= {
        "sgd",
        "momentum",
        "nesterov",
        "adagrad",
        "rmsprop",
        "adam",
        "adamw",
        "nadam",
        "radam",
        "adamax",
        "adadelta",
        "lion",
        "lamb",
        "timm",
    }
    assert set(options("scheduler")) >= {"none", "step", "exponential", "cosine", "onecycle", "plateau"}
    assert set(options("initializer")) >= {
        "default",
        "xavier_uniform",
        "xavier_normal",
        "kaiming_uniform",
        "kaiming_normal",
        "lecun_normal",
        "orthogonal",
        "trunc_normal",
    }
    assert set(options("activation")) >= {
        "relu",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "silu",
        "mish",
        "tanh",
        "sigmoid",
    }
    assert set(options("normalization")) >= {"none", "batchnorm", "layernorm", "groupnorm"}
    assert set(options("model")) >= {"mlp", "cnn", "timm"}
    assert set(options("data")) >= {"digits", "synthetic", "mnist", "fashion_mnist", "cifar10", "imagefolder"}
    assert set(options("trainer")) >= {"default", "cpu", "gpu", "ddp", "ddp_cpu"}
    assert set(options("logger")) >= {"csv", "tensorboard", "wandb", "none"}
    assert set(options("callbacks")) >= {"default", "none"}
    assert set(options("debug")) >= {"fast", "overfit", "profiler"}


def _one_batch(make_config, *overrides: str) -> pl.Trainer:
    cfg = make_config(*overrides, *FAST, "trainer.fast_dev_run=1", "trainer.accelerator=cpu")
    dm = build_datamodule(cfg.data, cfg.seed)
    network, _ = build_network(cfg, dm.input_shape, dm.num_classes)
    module = Classifier(network, cfg.optimizer, cfg.scheduler, dm.num_classes, 1)
    before = [p.detach().clone() for p in network.parameters()]
    trainer = build_trainer(cfg).trainer
    trainer.fit(module, datamodule=dm)
    changed = any(not torch.equal(a, b.detach()) for a, b in zip(before, network.parameters(), strict=True))
    assert changed, f"{overrides}: one training step changed no parameter"
    return trainer


@pytest.mark.parametrize("option", options("optimizer"))
def test_every_optimizer_trains_a_batch(make_config, option):
    _one_batch(make_config, f"optimizer={option}")


@pytest.mark.parametrize("option", options("initializer"))
def test_every_initializer_trains_a_batch(make_config, option):
    _one_batch(make_config, f"initializer={option}")


@pytest.mark.parametrize("option", options("activation"))
def test_every_activation_trains_a_batch(make_config, option):
    _one_batch(make_config, f"activation={option}", "model=cnn")


@pytest.mark.parametrize("option", options("normalization"))
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_every_normalization_trains_a_batch(make_config, option, model):
    _one_batch(make_config, f"normalization={option}", f"model={model}")


@pytest.mark.parametrize("option", options("scheduler"))
def test_every_scheduler_trains_a_batch(make_config, option):
    trainer = _one_batch(make_config, f"scheduler={option}")
    if option != "none":
        assert trainer.lr_scheduler_configs, option


@pytest.mark.parametrize("option", options("model"))
def test_every_model_builds_and_trains(make_config, option):
    extra = ["model.name=resnet10t", "data.image_size=16"] if option == "timm" else []
    _one_batch(make_config, f"model={option}", *extra)


@pytest.mark.parametrize("option", options("data"))
def test_every_data_option_builds(make_config, tmp_path, option):
    root = tmp_path / "data"
    overrides = [f"data={option}"]
    if option in ("mnist", "fashion_mnist"):
        write_mnist(root, n_train=60, n_test=20, fashion=option == "fashion_mnist")
        overrides.append(f"data.root={root}")
    elif option == "cifar10":
        write_cifar10(root, n_train=60, n_test=20)
        overrides.append(f"data.root={root}")
    elif option == "imagefolder":
        write_image_folder(root, classes=("a", "b", "c"), per_class=10, size=12, mode="RGB")
        overrides += [f"data.root={root}", "data.image_size=12"]
    elif option == "synthetic":
        overrides.append("data.num_samples=300")
    cfg = make_config(*overrides)
    dm = build_datamodule(cfg.data, cfg.seed)
    x, y = dm.splits.train
    assert x.dtype == torch.float32 and y.dtype == torch.long and x.dim() == 4
    assert len(dm.splits.val[1]) > 0 and len(dm.splits.test[1]) > 0
    # standardized with the training split's statistics
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1) < 0.1
    _one_batch(make_config, *overrides)


@pytest.mark.parametrize("group", ["trainer", "logger", "callbacks"])
def test_every_run_option_composes(make_config, group):
    for option in options(group):
        if group == "trainer" and option in ("gpu", "ddp"):
            cfg = make_config(f"{group}={option}")
            assert cfg.trainer.accelerator == "gpu"
            continue
        cfg = make_config(f"{group}={option}")
        built = build_trainer(cfg).trainer
        if group == "trainer":
            assert type(built.accelerator).__name__ == "CPUAccelerator"
            assert built.max_epochs == cfg.trainer.max_epochs
            continue
        entries = [entry for entry in (cfg[group] or {}).values() if entry is not None]
        assert (option == "none") == (not entries)
        present = {type(x).__name__ for x in (built.loggers if group == "logger" else built.callbacks)}
        assert {entry._target_.rsplit(".", 1)[-1] for entry in entries} <= present


@pytest.mark.parametrize("option", ["csv", "tensorboard", "none"])
def test_loggers_write_into_the_run_folder(make_config, option):
    cfg = make_config(f"logger={option}", "trainer.max_epochs=1", "trainer.enable_progress_bar=false")
    run_dir = cfg.hydra.runtime.output_dir
    trainer = build_trainer(cfg).trainer
    for logger in trainer.loggers:
        assert str(logger.save_dir).startswith(str(run_dir))
    assert len(trainer.loggers) == (0 if option == "none" else 1)


def test_debug_options_set_their_trainer_switches(make_config):
    assert make_config("debug=fast").trainer.fast_dev_run == 1
    assert make_config("debug=overfit").trainer.overfit_batches == 3
    assert make_config("debug=profiler").trainer.profiler == "simple"


def test_debug_overfit_memorizes_its_batches(make_config):
    from trainspeed.job import run_job

    cfg = make_config(
        "debug=overfit",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        "run_test=false",
        "trainer.max_epochs=40",
    )
    summary = run_job(cfg)
    assert summary.status == "completed"
    assert summary.steps == 120  # 3 batches x 40 epochs
    assert summary.metrics["train/loss"] < 0.05


@pytest.mark.parametrize("warmup", [0, 10])
def test_cosine_decays_every_parameter_group_to_its_own_floor(warmup):
    """A backbone learning at finetune.backbone_lr_factor x the head's rate decays to min_lr_factor x its own rate
    (with CosineAnnealingLR's single eta_min it rose to the head's floor: 5x its rate here)."""
    import torch
    from omegaconf import OmegaConf

    from trainspeed.optim.schedulers import build_scheduler

    head, backbone = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [head], "lr": 1e-3}, {"params": [backbone], "lr": 1e-4}])
    cfg = {"name": "cosine", "interval": "step", "warmup_steps": warmup, "min_lr_factor": 0.5}
    scheduler = build_scheduler(OmegaConf.create(cfg), optimizer, total_steps=100 + warmup)["scheduler"]
    # one group alone follows torch's CosineAnnealingLR (after the warm-up)
    reference_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(reference_opt, T_max=100, eta_min=0.5e-3)
    for step in range(100 + warmup):
        optimizer.step()
        scheduler.step()
        ratio = optimizer.param_groups[1]["lr"] / optimizer.param_groups[0]["lr"]
        assert ratio == pytest.approx(0.1), step  # the backbone keeps its factor throughout
        if step >= warmup:
            reference_opt.step()
            reference.step()
            assert optimizer.param_groups[0]["lr"] == pytest.approx(
                reference_opt.param_groups[0]["lr"], abs=1e-12
            )
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5e-3, 0.5e-4])
