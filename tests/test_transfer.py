"""Transfer learning from pretrained timm backbones, offline: weights files, the hub cache, fine-tuning strategies.

A module fixture runs scripts/pretrain_backbone.sh as a user would (test_resnet on digits 0-4) and the tests load
its exported weights into fresh networks, train them with the real Trainer and compare tensors with the file's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import timm
import torch
from conftest import REPO, compose_config, run_cli
from damaged_files import flip_one_bit
from safetensors.torch import load_file, save_file

from trainspeed.data import build_datamodule
from trainspeed.errors import ConfigError, DataError
from trainspeed.model import build_network
from trainspeed.training.classifier import Classifier
from trainspeed.training.finetune import plan_finetune
from trainspeed.training.trainer_factory import build_trainer

MODEL = ["model=timm", "model.name=test_resnet", "data.image_size=16"]
TARGET_TASK = [*MODEL, "data.classes=[5,6,7,8,9]"]
QUIET = ["trainer.enable_progress_bar=false", "logger=csv", "callbacks=none", "run_test=false"]
SHAPE = (1, 16, 16)
# One thread per process: tests share small machines, where oversubscribed threads make every step crawl
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> tuple[Path, Path]:
    """(weights file, training run) from scripts/pretrain_backbone.sh: test_resnet on digits 0-4, 6 epochs."""
    tmp = tmp_path_factory.mktemp("pretrain")
    out, run = tmp / "test_resnet.safetensors", tmp / "run"
    # OUT and RUN_DIR relative, as a user types them: taken from the folder the script runs in (tmp)
    env = {**os.environ, **ONE_THREAD, "PYTHON": sys.executable, "MODEL": "test_resnet", "IMAGE_SIZE": "16",
           "EPOCHS": "6", "OUT": out.name, "RUN_DIR": run.name, "WANDB_MODE": "offline"}  # fmt: skip
    script = REPO / "scripts" / "pretrain_backbone.sh"
    result = subprocess.run(
        ["bash", str(script), "logger=csv", "trainer.enable_progress_bar=false"],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert json.loads((run / "summary.json").read_text())["metrics"]["val/acc_best"] > 0.9
    return out, run


def config(tmp_path: Path, *overrides: str):
    run_dir = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    run_dir.mkdir()
    return compose_config([*TARGET_TASK, *QUIET, *overrides], run_dir)


def backbone_keys(state: dict) -> list[str]:
    return [k for k in state if not k.startswith("fc.")]


@pytest.mark.parametrize("classes", ["[5,6,7]", "[5,6,7,8,9]"])
def test_exported_weights_load_with_identical_backbone_and_a_new_head(pretrained, tmp_path, classes):
    weights, run = pretrained
    file = load_file(weights)
    trained = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)[
        "state_dict"
    ]
    assert {k: v for k, v in trained.items() if k.startswith("network.")}.keys() == {
        f"network.{k}" for k in file
    }
    assert all(torch.equal(trained[f"network.{k}"], v) for k, v in file.items())  # the export is the network

    cfg = config(tmp_path, f"model.weights={weights}", f"data.classes={classes}")
    num_classes = classes.count(",") + 1
    state = build_network(cfg, SHAPE, num_classes)[0].state_dict()
    assert set(state) == set(file) and len(backbone_keys(state)) == 90
    for key in backbone_keys(state):
        assert torch.equal(state[key], file[key]), key
    assert state["fc.weight"].shape == (num_classes, 96) and file["fc.weight"].shape == (5, 96)
    assert not torch.equal(state["fc.weight"][:3], file["fc.weight"][:3])  # re-created, even for 5 classes


def fit(cfg, *callbacks: pl.Callback):
    """The job's own parts (datamodule, network, fine-tuning plan, module, Trainer) with extra probes."""
    datamodule = build_datamodule(cfg.data, cfg.seed)
    pl.seed_everything(cfg.seed, verbose=False)
    network, weights = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    plan = plan_finetune(cfg.finetune, network, weights)
    module = Classifier(network, cfg.optimizer, cfg.scheduler, datamodule.num_classes, 10, plan)
    trainer = build_trainer(cfg).trainer
    trainer.callbacks.extend(callbacks)
    trainer.fit(module, datamodule=datamodule)
    return network, before, trainer


def test_linear_probe_changes_the_head_only(pretrained, tmp_path):
    cfg = config(tmp_path, f"model.weights={pretrained[0]}", "finetune=linear_probe", "trainer.max_epochs=2")
    network, before, trainer = fit(cfg)
    after = network.state_dict()
    assert trainer.global_step == 2 * 10
    for key in backbone_keys(after):  # conv / BN weights, BN running statistics and batch counters
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after["fc.weight"], before["fc.weight"])
    backbone = [p for n, p in network.named_parameters() if not n.startswith("fc.")]
    assert all(p.grad is None and not p.requires_grad for p in backbone)  # no backward pass into the backbone
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(network.fc.weight), id(network.fc.bias)}


class Snapshots(pl.Callback):
    """The network's tensors, and whether the optimizer holds state for a backbone tensor, after each epoch."""

    def __init__(self) -> None:
        self.states: list[dict] = []
        self.backbone_in_optimizer_state: list[bool] = []

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        network = pl_module.network
        self.states.append({k: v.clone() for k, v in network.state_dict().items()})
        self.backbone_in_optimizer_state.append(network.conv1[0].weight in trainer.optimizers[0].state)


def test_gradual_keeps_the_backbone_until_its_epoch_then_trains_it(pretrained, tmp_path):
    cfg = config(tmp_path, f"model.weights={pretrained[0]}", "finetune=gradual", "finetune.unfreeze_epoch=1",
                 "finetune.backbone_lr_factor=0.5", "trainer.max_epochs=2", "trainer.limit_train_batches=4")  # fmt: skip
    snapshots = Snapshots()
    network, before, trainer = fit(cfg, snapshots)
    first, second = snapshots.states
    assert all(torch.equal(first[k], before[k]) for k in backbone_keys(before))
    assert snapshots.backbone_in_optimizer_state == [False, True]
    changed = [k for k in backbone_keys(before) if not torch.equal(second[k], first[k])]
    assert (
        "conv1.0.weight" in changed and "bn1.running_mean" in changed and "layer4.0.conv2.weight" in changed
    )
    assert not torch.equal(first["fc.weight"], before["fc.weight"])
    lrs = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
    assert lrs == {"head": 1e-3, "backbone": 5e-4}


def test_full_finetuning_splits_head_and_backbone_into_decay_and_no_decay_groups(pretrained, tmp_path):
    cfg = config(tmp_path, f"model.weights={pretrained[0]}", "finetune=full", "finetune.backbone_lr_factor=0.5",
                 "optimizer=adamw", "optimizer.lr=1e-3", "optimizer.weight_decay=0.1")  # fmt: skip
    network, weights = build_network(cfg, SHAPE, 5)
    plan = plan_finetune(cfg.finetune, network, weights)
    plan.no_weight_decay = {"layer1.*"}  # what a timm model's no_weight_decay() names
    groups = {g["name"]: g for g in plan.param_groups(cfg.optimizer)}
    names = {id(p): n for n, p in network.named_parameters()}
    members = {label: {names[id(p)] for p in g["params"]} for label, g in groups.items()}
    assert [(label, g["lr"], g["weight_decay"]) for label, g in groups.items()] == [
        ("head", 1e-3, 0.1), ("head/no_decay", 1e-3, 0.0), ("backbone", 5e-4, 0.1), ("backbone/no_decay", 5e-4, 0.0)
    ]  # fmt: skip
    assert members["head"] == {"fc.weight"} and members["head/no_decay"] == {"fc.bias"}
    decayed = members["backbone"]
    assert decayed and all(network.get_parameter(n).ndim > 1 and not n.startswith("layer1.") for n in decayed)
    kept_out = members["backbone/no_decay"]
    assert {n for n in kept_out if n.startswith("layer1.")} == {
        n for n, _ in network.named_parameters() if n.startswith("layer1.")
    }
    assert all(network.get_parameter(n).ndim <= 1 for n in kept_out if not n.startswith("layer1."))
    assert decayed | kept_out == {n for n in names.values() if not n.startswith("fc.")}


def test_initializer_sets_the_new_head_and_never_the_pretrained_backbone(pretrained, tmp_path):
    file = load_file(pretrained[0])
    network, _ = build_network(
        config(tmp_path, f"model.weights={pretrained[0]}", "initializer=orthogonal"), SHAPE, 5
    )
    state = network.state_dict()
    assert all(torch.equal(state[k], file[k]) for k in backbone_keys(state))
    assert (
        torch.count_nonzero(network.fc.bias) == 0
    )  # the initializer zeroes biases (nn.Linear's are not zero)
    rows = network.fc.weight @ network.fc.weight.T  # orthonormal rows: Saxe et al.'s gain 1
    assert torch.allclose(rows, torch.eye(5), atol=1e-5)


def _torch_saved(path: Path, state: dict) -> Path:
    torch.save(state, path)
    return path


def _missing_tensor(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "layer1.0.conv1.weight"}


@pytest.mark.parametrize(
    ("name", "write", "model", "message"),
    [
        ("garbage.safetensors", lambda p, s: p.write_bytes(b"not a weights file"), "test_resnet", "cannot read"),
        ("cut.safetensors", "truncate", "test_resnet", "cannot read"),
        ("garbage.pth", lambda p, s: p.write_bytes(b"\x80\x02garbage"), "test_resnet", "cannot read"),
        ("counter.pth", lambda p, s: torch.save({"epoch": 3}, p), "test_resnet", "not tensors: epoch"),
        ("flipped.pth", lambda p, s: flip_one_bit(_torch_saved(p, s), "data/0"), "test_resnet",
         "the weights file is damaged: flipped/data/0 does not match the checksum"),
        ("less.safetensors", lambda p, s: save_file(_missing_tensor(s), p), "test_resnet",
         "1 tensors of the model are not in the file (layer1.0.conv1.weight)"),
        ("more.safetensors", lambda p, s: save_file({**s, "extra.weight": torch.ones(2)}, p), "test_resnet",
         "1 tensors of the file have no place in the model (extra.weight)"),
        ("other.safetensors", lambda p, s: save_file(s, p), "resnet10t", "size mismatch for conv1.0.weight"),
    ],
)  # fmt: skip
def test_a_corrupt_or_mismatched_file_is_a_clear_error(pretrained, tmp_path, name, write, model, message):
    path = tmp_path / name
    if write == "truncate":
        path.write_bytes(pretrained[0].read_bytes()[:5000])
    else:
        write(path, load_file(pretrained[0]))
    cfg = config(tmp_path, f"model.name={model}", f"model.weights={path}")
    with pytest.raises(DataError, match="model.weights") as err:
        build_network(cfg, SHAPE, 5)
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["model.weights=nowhere.safetensors"], DataError, "no such file"),
        (["model.weights=weights.ckpt"], ConfigError, "model.weights='weights.ckpt' is not valid"),
        (["finetune=linear_probe"], ConfigError, "finetune='linear_probe' is not valid"),
        (["finetune=gradual"], ConfigError, "no weights are loaded"),
        (["finetune.backbone_lr_factor=0.1"], ConfigError, "finetune.backbone_lr_factor=0.1 is not valid"),
        (["model.pretrained=true"], DataError, "not in the local Hugging Face cache"),
    ],
)
def test_settings_that_cannot_load_weights_are_refused_at_build_time(
    tmp_path, monkeypatch, overrides, error, message
):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    cfg = config(tmp_path, *overrides)
    with pytest.raises(error, match=message):
        plan_finetune(cfg.finetune, *build_network(cfg, SHAPE, 5))


@pytest.mark.parametrize(
    ("overrides", "unused"),
    [(["normalization=groupnorm", "normalization.num_groups=8"], 45), (["activation=gelu"], 0)],
)
def test_changed_layers_on_a_pretrained_backbone_warn_once_and_list_what_no_longer_fits(
    pretrained, tmp_path, caplog, overrides, unused
):
    file = load_file(pretrained[0])
    cfg = config(tmp_path, f"model.weights={pretrained[0]}", *overrides)
    with caplog.at_level(logging.INFO):
        state = build_network(cfg, SHAPE, 5)[0].state_dict()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "on a pretrained backbone" in warnings[0]
    assert f"{unused} pretrained tensors no longer match" in warnings[0]
    if unused:
        assert "bn1.running_mean" in warnings[0]
        assert unused == sum(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in file)
    assert torch.equal(state["layer2.0.conv1.weight"], file["layer2.0.conv1.weight"])


def rgb_weights(path: Path) -> torch.nn.Module:
    torch.manual_seed(3)
    rgb = timm.create_model("test_resnet", num_classes=7, in_chans=3).eval()
    save_file(rgb.state_dict(), path)
    return rgb


def test_grey_images_feed_a_three_channel_backbone(tmp_path):
    """timm sums the RGB kernels of the first convolution: the same as feeding the grey channel three times."""
    rgb = rgb_weights(tmp_path / "rgb.safetensors")
    grey = build_network(config(tmp_path, f"model.weights={tmp_path / 'rgb.safetensors'}"), SHAPE, 5)[
        0
    ].eval()
    assert grey.conv1[0].weight.shape[1] == 1
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(grey.forward_features(x), rgb.forward_features(x.repeat(1, 3, 1, 1)), atol=1e-5)


def test_pretrained_true_reads_timm_weights_from_the_local_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--timm--test_resnet.r160_in1k"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    rgb = rgb_weights(repo / "snapshots" / "abc123" / "model.safetensors")
    network, weights = build_network(config(tmp_path, "model.pretrained=true"), SHAPE, 5)
    assert weights.source.endswith("model.safetensors")
    assert not hasattr(network, "pretrained_weights")  # the record is returned, not attached to the module
    assert torch.equal(network.layer3[0].conv2.weight, rgb.layer3[0].conv2.weight)
    assert torch.equal(network.conv1[0].weight, rgb.conv1[0].weight.sum(dim=1, keepdim=True))


@pytest.mark.slow
def test_transfer_sweep_pretrained_runs_reach_the_target_in_fewer_steps_than_scratch(pretrained, tmp_path):
    weights = pretrained[0]
    result = run_cli(
        ["trainspeed.train", "experiment=transfer", f"model.weights={weights}", "seed=0", "trainer.max_epochs=8",
         "logger=csv", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, env=ONE_THREAD,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {}
    for job in sorted((tmp_path / "sweep").glob("[0-9]*")):
        summary = json.loads((job / "summary.json").read_text())
        jobs[next(o for o in summary["overrides"] if o.startswith("finetune="))] = (job, summary)
    assert list(jobs) == [f"finetune={s}" for s in ("scratch", "linear_probe", "gradual", "full")]
    assert all(summary["status"] == "completed" for _, summary in jobs.values())
    # the record names the weights each job started from by their fingerprint (scratch: none), and one data set
    digest = "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()
    assert {k: s["inputs"]["weights"] for k, (_, s) in jobs.items()} == {
        "finetune=scratch": None, "finetune=linear_probe": digest, "finetune=gradual": digest, "finetune=full": digest
    }  # fmt: skip
    assert len({s["inputs"]["data"] for _, s in jobs.values()}) == 1
    steps = {k.split("=")[1]: s["time_to_target"]["steps"] for k, (_, s) in jobs.items()}
    assert steps["scratch"] is not None, steps
    assert steps["full"] < steps["scratch"] and steps["gradual"] < steps["scratch"], steps
    # linear_probe through the command line: the backbone in its checkpoint is still the file's
    probe = jobs["finetune=linear_probe"][0] / "checkpoints" / "last.ckpt"
    state = torch.load(probe, map_location="cpu", weights_only=False)["state_dict"]
    file = load_file(weights)
    assert all(torch.equal(state[f"network.{k}"], file[k]) for k in backbone_keys(file))
    assert len((tmp_path / "sweep" / "report.csv").read_text().splitlines()) == 1 + 4


def test_a_damaged_checkpoint_is_not_exported(tmp_path):
    from trainspeed.model.pretrained import export_weights

    checkpoint = tmp_path / "best.ckpt"
    torch.save({"state_dict": {"network.fc.weight": torch.zeros(4, 4)}}, checkpoint)
    assert set(load_file(export_weights(checkpoint, tmp_path / "ok.safetensors"))) == {"fc.weight"}
    flip_one_bit(checkpoint, "data/0")
    with pytest.raises(DataError, match="damaged: best/data/0 does not match the checksum"):
        export_weights(checkpoint, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
