"""Several optimizer steps per Lightning iteration change no result: same parameters, steps, learning rates,
validation steps and time-to-target step as one step per iteration (deterministic CPU, same seed)."""

from __future__ import annotations

import copy
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.plugins.precision import MixedPrecision

from trainspeed.data import build_datamodule
from trainspeed.data.index_loader import IndexBatchLoader
from trainspeed.model import build_network
from trainspeed.step_groups import StepPlan
from trainspeed.training.classifier import Classifier
from trainspeed.training.trainer_factory import STEP_KEYS, build_trainer

BASE = [
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
    "trainer.deterministic=true",
    "run_test=false",
    "logger=csv",
    "model.width=32",
    "seed=1",
]


def _fp16_with_scaler(trainer: pl.Trainer) -> None:
    """16-mixed with its gradient scaler, on the CPU: Lightning's own MixedPrecision plugin, set directly (its
    `precision="16-mixed"` flag turns into bf16-mixed on a CPU, which has no scaler)."""
    trainer.strategy.precision_plugin = MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))


def _train(cfg, ckpt_path: Path | None = None, plugin=None, save_to: Path | None = None) -> dict:
    """What run_job does up to fit, keeping the objects a test needs to look at; `plugin(trainer)` may change
    the trainer before fit; `save_to`: where to save the checkpoint of the state fit ended in (as run_job's
    last.ckpt at the end of training)."""
    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network, _ = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    steps = {key: cfg.trainer[key] for key in STEP_KEYS if cfg.trainer.get(key) is not None}
    module = Classifier(
        network, cfg.optimizer, cfg.scheduler, datamodule.num_classes, cfg.trainer.log_every_n_steps, **steps
    )
    parts = build_trainer(cfg)
    lrs: list[float] = []
    module.configure_optimizers = _recording(module.configure_optimizers, lrs)
    if plugin is not None:
        plugin(parts.trainer)
    parts.trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if save_to is not None:
        parts.trainer.save_checkpoint(save_to)
    with open(Path(cfg.trainer.default_root_dir) / "metrics.csv") as file:
        rows = list(csv.DictReader(file))
    return {
        "params": [p.detach().clone() for p in network.parameters()],
        "global_step": parts.trainer.global_step,
        "epoch": parts.trainer.current_epoch,
        "lrs": lrs,
        "val_steps": [int(r["step"]) for r in rows if r.get("val/acc")],
        "logged": [(int(r["step"]), r["train/loss"], r["lr"]) for r in rows if r.get("train/loss")],
        "time_to_target": parts.time_to_target.result,
        "resolution": parts.time_to_target.resolution_steps,
        "samples": parts.clock.samples,
    }


def _recording(configure, lrs: list[float]):
    """configure_optimizers whose optimizer records the learning rate of every optimizer step."""

    def wrapped():
        config = configure()
        config["optimizer"].register_step_pre_hook(lambda opt, *_: lrs.append(opt.param_groups[0]["lr"]))
        return config

    return wrapped


CASES = {
    "per-epoch validation": ["trainer.max_epochs=2"],
    "validation every 5 steps, stop at target": [
        "trainer.max_epochs=4",
        "trainer.val_check_interval=5",
        "trainer.check_val_every_n_epoch=null",
        "target.value=0.8",
        "target.stop=true",
    ],
    "per-step cosine schedule, mid-epoch max_steps": [
        "trainer.max_epochs=-1",
        "trainer.max_steps=47",
        "scheduler=cosine",
        "trainer.log_every_n_steps=7",
    ],
    "per-epoch step schedule, clipping": [
        "trainer.max_epochs=3",
        "scheduler=step",
        "scheduler.step_size=1",
        "trainer.gradient_clip_val=0.05",
    ],
    "plateau schedule on the validation loss": [
        "trainer.max_epochs=3",
        "scheduler=plateau",
        "scheduler.patience=0",
    ],
    "accumulation, validation every 3 steps within the epoch": [
        "trainer.max_epochs=2",
        "trainer.accumulate_grad_batches=3",
        "trainer.val_check_interval=3",
        "trainer.gradient_clip_algorithm=value",
        "trainer.gradient_clip_val=0.01",
    ],
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_several_steps_per_iteration_change_no_result(make_config, overrides):
    one = _train(make_config(*BASE, *overrides, "trainer.steps_per_iteration=1"))
    grouped = _train(make_config(*BASE, *overrides, "trainer.steps_per_iteration=16"))
    for a, b in zip(one["params"], grouped["params"], strict=True):
        assert torch.equal(a, b)
    for key in ("global_step", "lrs", "val_steps", "logged", "time_to_target", "resolution", "samples"):
        assert one[key] == grouped[key], key
    assert len(one["lrs"]) == one["global_step"] > 0  # global_step counts optimizer steps
    assert one["val_steps"]


def test_validation_cadence_and_resolution_count_optimizer_steps(make_config):
    result = _train(
        make_config(
            *BASE,
            "trainer.max_epochs=2",
            "trainer.val_check_interval=5",
            "trainer.check_val_every_n_epoch=null",
            "trainer.steps_per_iteration=16",
        )
    )
    # digits: 1257 training samples, 20 steps per epoch; Lightning logs step N as N - 1
    assert result["val_steps"] == [s - 1 for s in range(5, 41, 5)]
    assert result["resolution"] == 5
    assert result["samples"] == 2 * 1257  # the partial last batch counts its real samples
    assert [step for step, _, _ in result["logged"]] == [9, 19, 29, 39]


def test_groups_end_on_every_event_and_never_cross_the_epoch():
    plan = StepPlan(size=16, every=(10, 50), epoch_every=(3,), stop_at=45)
    ends = list(plan.group_ends(epoch_start=40, start=0, steps=20))
    assert ends[:4] == [
        3,
        5,
        6,
        9,
    ]  # epoch-local multiples of 3, max_steps (global 45), then global 50 = local 10
    assert 10 in ends and ends[-1] == 20
    assert list(StepPlan(size=4).group_ends(0, 2, 11)) == [6, 10, 11]


# mid-epoch, the epoch's last step, just after an epoch; an epoch's last step of a run bounded by steps
@pytest.mark.parametrize(
    ("step", "bound"),
    [(10, "epochs"), (20, "epochs"), (30, "epochs"), (40, "steps")],
)
def test_resuming_at_a_checkpoint_continues_exactly(make_config, step, bound):
    """A killed run resumes from its last checkpoint: continuing from the checkpoint of step N gives the same
    parameters, step count, learning rates and logged training windows as the run that was never stopped (the
    windows of 7 steps are cut by the checkpoints)."""
    run = [
        *BASE,
        *(
            ["trainer.max_epochs=3"]
            if bound == "epochs"
            else ["trainer.max_steps=60", "trainer.max_epochs=-1"]
        ),
        "trainer.log_every_n_steps=7",
        "scheduler=cosine",
        "model.dropout=0.2",  # random numbers in the step: the generators must resume too
        "callbacks.resume_checkpoint.every_n_train_steps=10",
        "callbacks.resume_checkpoint.save_top_k=-1",
        "+callbacks.resume_checkpoint.filename='{step}'",
    ]
    cfg = make_config(*run)
    whole = _train(cfg)
    checkpoint = Path(cfg.callbacks.resume_checkpoint.dirpath) / f"step={step}.ckpt"
    resumed = _train(make_config(*run), ckpt_path=checkpoint)
    for a, b in zip(whole["params"], resumed["params"], strict=True):
        assert torch.equal(a, b)
    assert resumed["global_step"] == whole["global_step"] == 60
    assert resumed["lrs"] == whole["lrs"][step:]
    assert resumed["logged"] == [row for row in whole["logged"] if row[0] >= step]


def test_a_run_bounded_by_steps_trains_on_from_its_end_exactly(make_config):
    """A run that ended at an epoch's end (max_steps 40: two epochs of 20 steps), resumed from the checkpoint
    written as it ended, with a larger max_steps, continues as the longer run that was never stopped: into the next
    epoch, in that epoch's data order, without the finished epoch's end hooks run again."""
    run = [*BASE, "trainer.max_epochs=-1", "trainer.log_every_n_steps=7"]
    whole = _train(make_config(*run, "trainer.max_steps=60"))
    shorter = make_config(*run, "trainer.max_steps=40")
    end = Path(shorter.trainer.default_root_dir) / "end.ckpt"
    _train(shorter, save_to=end)
    resumed = _train(make_config(*run, "trainer.max_steps=60"), ckpt_path=end)
    for a, b in zip(whole["params"], resumed["params"], strict=True):
        assert torch.equal(a, b)
    assert (resumed["global_step"], resumed["epoch"]) == (whole["global_step"], whole["epoch"]) == (60, 3)
    assert resumed["logged"] == [row for row in whole["logged"] if row[0] >= 40]
    assert resumed["val_steps"] == [step for step in whole["val_steps"] if step >= 40] == [59]


@pytest.mark.parametrize("steps_per_iteration", [1, 16])
def test_a_checkpoint_at_a_validation_step_holds_that_validation(make_config, steps_per_iteration):
    """A checkpoint due at a step that also validates is written after the validation: resumed from it, the run
    keeps the time to target that validation reached (Lightning resumes a checkpoint written before it past that
    validation, which then never runs)."""
    run = [
        *BASE,
        f"trainer.steps_per_iteration={steps_per_iteration}",
        "trainer.max_epochs=3",
        "trainer.val_check_interval=10",
        "trainer.check_val_every_n_epoch=null",
        "callbacks.resume_checkpoint.every_n_train_steps=10",
        "callbacks.resume_checkpoint.save_top_k=-1",
        "+callbacks.resume_checkpoint.filename='{step}'",
    ]
    probe = make_config(*run, "target.value=2")  # never reached: what validation gives at step 30
    _train(probe)
    with open(Path(probe.trainer.default_root_dir) / "metrics.csv") as file:
        at_30 = next(r["val/acc"] for r in csv.DictReader(file) if r.get("val/acc") and r["step"] == "29")
    cfg = make_config(*run, f"target.value={at_30}")
    whole = _train(cfg)
    assert whole["time_to_target"]["steps"] == 30  # reached at the checkpoint's step
    checkpoint = Path(cfg.callbacks.resume_checkpoint.dirpath) / "step=30.ckpt"
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["callbacks"]
    assert next(v for k, v in saved.items() if "TimeToTarget" in k)["result"] == whole["time_to_target"]
    resumed = _train(make_config(*run, f"target.value={at_30}"), ckpt_path=checkpoint)
    assert resumed["time_to_target"] == whole["time_to_target"]
    assert resumed["val_steps"] == [s for s in whole["val_steps"] if s >= 30]  # no validation run twice


def _reference_fp16_loop(cfg, steps: int, clip: float) -> list[torch.Tensor]:
    """PyTorch's own recipe for clipping under a gradient scaler: scale, backward, unscale_, clip, step, update
    (same network, data order and optimizer as the trainspeed run)."""
    torch.manual_seed(cfg.seed)
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network, _ = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    optimizer = torch.optim.SGD(network.parameters(), lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum)
    scaler = torch.amp.GradScaler("cpu")
    loader = IndexBatchLoader(*datamodule.splits.train, int(cfg.data.batch_size), shuffle=True, seed=cfg.seed)
    network.train()
    for _, (x, y) in zip(range(steps), loader, strict=False):
        with torch.autocast("cpu", dtype=torch.float16, cache_enabled=False):
            loss = F.cross_entropy(network(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
    return [p.detach() for p in network.parameters()]


@pytest.mark.parametrize("steps_per_iteration", [1, 16])
def test_clipping_under_a_gradient_scaler_clips_the_unscaled_gradients(make_config, steps_per_iteration):
    """16-mixed: Lightning's manual-optimization recipe clips the gradients while the scaler still has them
    multiplied by 65536, which shrinks every clipped step 65536 times. The step must clip them unscaled."""
    clip, steps = 0.05, 12
    run = [*BASE, "optimizer=momentum", "trainer.max_epochs=-1", f"trainer.max_steps={steps}"]
    cfg = make_config(
        *run, f"trainer.gradient_clip_val={clip}", f"trainer.steps_per_iteration={steps_per_iteration}"
    )
    trained = _train(cfg, plugin=_fp16_with_scaler)
    reference = _reference_fp16_loop(cfg, steps, clip)
    unclipped = _reference_fp16_loop(cfg, steps, clip=float("inf"))
    assert trained["global_step"] == steps
    for a, b, c in zip(trained["params"], reference, unclipped, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(b, c, rtol=1e-3, atol=1e-4)  # the clipping mattered


class _ListensToBackward(pl.Callback):
    def on_before_backward(self, trainer, pl_module, loss) -> None:
        pass


class _SubclassWithStepHook(Classifier):
    def on_before_zero_grad(self, optimizer) -> None:
        pass


PATHS = {  # name: (module class, extra callback, change to the trainer, whether the step is direct)
    "one device, 32-true: direct": (Classifier, None, None, True),
    "a callback listens to a step hook": (Classifier, _ListensToBackward(), None, False),
    "a subclass overrides a step hook": (_SubclassWithStepHook, None, None, False),
    "a gradient scaler": (Classifier, None, _fp16_with_scaler, False),
}


@pytest.mark.parametrize("path", PATHS.values(), ids=PATHS.keys())
def test_the_step_calls_the_optimizer_directly_unless_the_wrapper_has_work(make_config, path):
    """Classifier's own on_before_optimizer_step (clipping after a scaler) must not count as a listener: the plain
    case keeps the direct step."""
    module_class, callback, change, direct = path
    cfg = make_config(*BASE, "trainer.max_epochs=-1", "trainer.max_steps=3")
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network, _ = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    module = module_class(network, cfg.optimizer, cfg.scheduler, datamodule.num_classes)
    parts = build_trainer(cfg)
    if callback is not None:
        parts.trainer.callbacks.append(callback)
    if change is not None:
        change(parts.trainer)
    parts.trainer.fit(module, datamodule=datamodule)
    assert module._direct is direct
    assert parts.trainer.global_step == 3


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import pytorch_lightning as pl
from conftest import compose_config
from pathlib import Path
from trainspeed.data import build_datamodule
from trainspeed.model import build_network
from trainspeed.training.classifier import Classifier
from trainspeed.training.trainer_factory import build_trainer

cfg = compose_config(["trainer=ddp_cpu", *{base!r}, "trainer.max_steps=15"], Path("run"))
datamodule = build_datamodule(cfg.data, cfg.seed)
network, _ = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
module = Classifier(network, cfg.optimizer, cfg.scheduler, datamodule.num_classes, 10)

class Report(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        total = float(sum(p.double().sum() for p in pl_module.parameters()))
        # one write per rank (a pipe keeps a short write whole), as the other rank writes to the same pipe
        sys.stdout.write(f"rank {{trainer.global_rank}} step {{trainer.global_step}} params {{total!r}}\\n")
        sys.stdout.flush()

parts = build_trainer(cfg)
parts.trainer.callbacks.append(Report())
parts.trainer.fit(module, datamodule=datamodule)
"""


@pytest.mark.slow
def test_ddp_averages_gradients_every_step(tmp_path):
    """Two CPU processes see different halves of each batch; with gradients averaged every step their
    parameters stay identical."""
    base = [b for b in BASE if "accelerator" not in b and "deterministic" not in b]
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), base=base))
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "WANDB_MODE": "offline"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted(re.findall(r"(rank) (\d) (step) (\d+) (params) (\S+)\n", result.stdout))
    assert [r[1] for r in reports] == ["0", "1"] and {r[3] for r in reports} == {"15"}, (
        result.stdout[-2000:] + result.stderr[-3000:]
    )
    assert reports[0][5] == reports[1][5]


class _WarmUpAgain(pl.Callback):
    """At the end of the first epoch (Adam state and batch-norm statistics no longer at their start), runs the
    module's warm-up once more and keeps what it may have touched, before and after, and the autocast dtype its
    forward passes ran under."""

    def __init__(self) -> None:
        self.before: dict | None = None
        self.after: dict | None = None
        self.hook_calls = 0
        self.autocast: set = set()

    def on_train_start(self, trainer, pl_module) -> None:
        trainer.optimizers[0].register_step_pre_hook(
            lambda *_: setattr(self, "hook_calls", self.hook_calls + 1)
        )

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.before is None:
            self.before = _state(trainer, pl_module)
            handle = pl_module.network.register_forward_pre_hook(
                lambda *_: self.autocast.add(_autocast_dtype())
            )
            pl_module.warm_up(trainer.train_dataloader.shapes())
            handle.remove()
            self.after = _state(trainer, pl_module)


def _autocast_dtype() -> torch.dtype | None:
    return torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None


def _state(trainer, module) -> dict:
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    return {
        "tensors": [t.detach().clone() for t in [*module.network.parameters(), *module.network.buffers()]],
        "optimizer": copy.deepcopy(trainer.optimizers[0].state_dict()),
        "rng": torch.get_rng_state(),
        "grads": [p.grad for p in module.network.parameters()],
        "scaler": scaler.state_dict() if scaler is not None else None,
    }


PRECISIONS = {  # name: (overrides, change to the trainer, the autocast dtype training and warm-up run under)
    "32-true": ([], None, None),
    "bf16-mixed": (["trainer.precision=bf16-mixed"], None, torch.bfloat16),
    "16-mixed with its scaler, clipping, accumulation": (
        ["trainer.gradient_clip_val=0.05", "trainer.accumulate_grad_batches=2"],
        _fp16_with_scaler,
        torch.float16,
    ),
}


@pytest.mark.parametrize("precision", PRECISIONS.values(), ids=PRECISIONS.keys())
def test_warm_up_runs_the_training_step_and_leaves_no_trace(make_config, precision):
    """The warm-up runs the step's own code (so its kernels are the ones training runs), under the same autocast,
    and restores everything it touched."""
    overrides, change, dtype = precision
    cfg = make_config(*BASE, "trainer.max_epochs=2", "normalization=batchnorm", "optimizer=adam", *overrides)
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network, _ = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    steps = {key: cfg.trainer[key] for key in STEP_KEYS if cfg.trainer.get(key) is not None}
    module = Classifier(network, cfg.optimizer, cfg.scheduler, datamodule.num_classes, **steps)
    probe = _WarmUpAgain()
    parts = build_trainer(cfg)
    parts.trainer.callbacks.append(probe)
    if change is not None:
        change(parts.trainer)
    trained_under: set = set()
    network.register_forward_pre_hook(
        lambda m, _: trained_under.add(_autocast_dtype()) if m.training and probe.before is None else None
    )
    parts.trainer.fit(module, datamodule=datamodule)
    before, after = probe.before, probe.after
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in network.modules())
    assert before["optimizer"]["state"]  # Adam's moments exist: the warm-up's step had something to disturb
    assert trained_under == {dtype} and probe.autocast == {dtype}
    for a, b in zip(before["tensors"], after["tensors"], strict=True):
        assert torch.equal(a, b)
    for key, state in before["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, after["optimizer"]["state"][key][name]), name
    assert torch.equal(before["rng"], after["rng"])
    assert before["scaler"] == after["scaler"]
    if change is not None:
        assert before["scaler"]["_growth_tracker"] > 0  # the scaler's state had moved: restoring it is seen
    assert all(g is None for g in after["grads"])
    assert probe.hook_calls == parts.trainer.global_step  # the warm-up steps were not seen by the step hooks


@pytest.mark.parametrize("accumulate", [1, 3])
def test_a_group_counts_the_samples_its_steps_fetch(accumulate):
    # 103 samples in batches of 8: 12 full batches and a partial one of 7
    x, y = torch.arange(103.0).unsqueeze(1), torch.arange(103)
    loader = IndexBatchLoader(x, y, 8, shuffle=True, seed=0, plan=StepPlan(size=2), accumulate=accumulate)
    groups = list(loader)
    fetched = [[int(yb.shape[0]) for step in group for _, yb in step] for group in groups]
    assert [group.samples for group in groups] == [sum(sizes) for sizes in fetched]
    assert sum(group.samples for group in groups) == 103
    seen = torch.cat([yb for group in groups for step in group for _, yb in step])
    assert sorted(seen.tolist()) == list(range(103))  # every sample once


def test_one_step_per_iteration_keeps_lightnings_batch_count(make_config):
    """Validation at a fraction of an epoch runs one step per iteration; the epoch keeps its finite length, so the
    progress bar's time estimate works and time-to-target counts fractional epochs."""
    from trainspeed.job import run_job

    cfg = make_config(
        *[o for o in BASE if o != "trainer.enable_progress_bar=false"],
        "trainer.max_epochs=2",
        "trainer.val_check_interval=0.5",
        "trainer.steps_per_iteration=16",
        "target.value=0.3",
    )
    summary = run_job(cfg)
    assert summary.status == "completed" and summary.steps == 40
    reached = summary.time_to_target
    assert reached.steps % 10 == 0 and reached.epochs == reached.steps / 20  # 20 steps per epoch
    assert reached.resolution_steps == 10


@pytest.mark.parametrize(
    ("overrides", "val_steps", "resolution"),
    [
        (["trainer.val_check_interval=7"], [7, 14, 27, 34, 47, 54], 13),  # counted within each epoch
        (["trainer.val_check_interval=7", "trainer.check_val_every_n_epoch=null"], list(range(7, 61, 7)), 7),
        (["trainer.val_check_interval=7", "trainer.check_val_every_n_epoch=2"], [27, 34], 33),
        (["trainer.check_val_every_n_epoch=2"], [40, 80], 40),
    ],
)
@pytest.mark.parametrize("steps_per_iteration", [1, 16])
def test_resolution_is_the_longest_gap_between_validations(
    make_config, overrides, val_steps, resolution, steps_per_iteration
):
    epochs = 4 if val_steps[-1] > 60 else 3
    result = _train(
        make_config(
            *BASE,
            *overrides,
            f"trainer.max_epochs={epochs}",
            f"trainer.steps_per_iteration={steps_per_iteration}",
        )
    )
    assert [step + 1 for step in result["val_steps"]] == val_steps  # Lightning logs step N as N - 1
    gaps = [b - a for a, b in zip([0, *val_steps], val_steps, strict=False)]
    assert result["resolution"] == resolution >= max(gaps)
