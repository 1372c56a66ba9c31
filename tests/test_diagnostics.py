"""Per-layer diagnostics: what they record (vanishing signal, dead units), when their hooks exist, how the file grows
on resume, and the heatmaps of `python -m trainspeed.diagnose` and of the report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from conftest import FAST, run_cli
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from report_fixtures import make_job

from trainspeed.callbacks.diagnostics import LayerDiagnostics
from trainspeed.data import build_datamodule
from trainspeed.job import run_job
from trainspeed.model import build_network
from trainspeed.record.diagnostics_csv import COLUMNS, LayerRow, append_rows, read_rows
from trainspeed.report.build import build_report
from trainspeed.training.classifier import Classifier

PNG = b"\x89PNG\r\n\x1a\n"
DEEP_RELU = ["model.depth=30", "model.width=64", "activation=relu", "normalization=none"]


def csv_of(cfg) -> Path:
    return Path(cfg.hydra.runtime.output_dir) / "diagnostics.csv"


def step_rows(path: Path, step: int) -> dict[str, LayerRow]:
    return {row.layer: row for row in read_rows(path) if row.step == step}


@pytest.mark.parametrize(
    ("initializer", "vanishes"),
    [("xavier_normal", True), ("kaiming_normal", False)],
)
def test_deep_relu_signal_vanishes_under_glorot_and_survives_under_he(make_config, initializer, vanishes):
    """Glorot's gain-1 scaling halves a ReLU layer's output variance at every layer: over 29 layers the std
    falls to ~2^-14.5 of the first layer's. He's gain sqrt(2) keeps it."""
    cfg = make_config(
        *DEEP_RELU, f"initializer={initializer}", "callbacks=diagnostics", "trainer.max_steps=1", *FAST
    )
    run_job(cfg)
    header = csv_of(cfg).read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS)
    rows = step_rows(csv_of(cfg), 0)
    hidden = sorted((r for r in rows.values() if r.dead_fraction is not None), key=lambda r: r.position)
    assert [r.layer for r in hidden] == [f"body.{2 * i + 1}" for i in range(30)]
    assert rows["head"].dead_fraction is None and rows["head"].saturated_fraction is None
    ratio = hidden[-1].act_std / hidden[0].act_std
    assert (ratio < 0.05) if vanishes else (ratio > 0.2), ratio
    assert all(r.grad_norm > 0 and 0 < r.update_ratio < 1 for r in rows.values())
    logged = (csv_of(cfg).parent / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"diag_act_std/00_body_1", "diag_dead_fraction/29_body_59", "diag_grad_norm/30_head"} <= set(
        logged
    )


def _fit(network, dm, callbacks, max_steps: int, ckpt_path: str | None = None) -> pl.Trainer:
    opt = {"name": "adam", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}
    from omegaconf import OmegaConf

    module = Classifier(network, OmegaConf.create(opt), OmegaConf.create({"name": "none"}), dm.num_classes)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        logger=False,
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer


@pytest.fixture
def small_mlp(make_config):
    """A real 2-layer ReLU MLP on the digits (Linear body.1 -> ReLU -> Linear body.3 -> ReLU -> head)."""

    def make(*overrides: str):
        cfg = make_config(
            "model.depth=2", "model.width=32", "activation=relu", "normalization=none", *overrides
        )
        torch.manual_seed(0)
        dm = build_datamodule(cfg.data, 0)
        return build_network(cfg, dm.input_shape, dm.num_classes)[0], dm

    return make


def test_a_layer_forced_negative_after_a_relu_is_all_dead_and_learns_nothing(small_mlp, tmp_path):
    network, dm = small_mlp()
    with torch.no_grad():  # its input is a ReLU's output (>= 0): every pre-activation is < 0
        network.body[3].weight.copy_(-network.body[3].weight.abs())
        network.body[3].bias.fill_(-0.1)
    _fit(network, dm, [LayerDiagnostics(tmp_path, every_n_steps=1)], max_steps=2)
    for step in (0, 1):
        rows = step_rows(tmp_path / "diagnostics.csv", step)
        assert rows["body.3"].dead_fraction == 1.0
        assert rows["body.1"].dead_fraction < 0.5
        # nothing learns around a dead layer: no gradient passes it to the layers below, and the head above sees
        # only zeros (only its bias learns)
        assert all(row.grad_norm == 0.0 and row.update_ratio == 0.0 for row in rows.values())


def test_a_sigmoid_layer_with_huge_weights_is_saturated(small_mlp, tmp_path):
    network, dm = small_mlp("activation=sigmoid")
    with torch.no_grad():
        network.body[1].weight.mul_(1000.0)
    _fit(network, dm, [LayerDiagnostics(tmp_path, every_n_steps=1)], max_steps=1)
    rows = step_rows(tmp_path / "diagnostics.csv", 0)
    assert rows["body.1"].saturated_fraction > 0.9 and rows["body.1"].dead_fraction is None
    assert rows["body.3"].saturated_fraction < 0.5


class HookProbe(Callback):
    """At every training forward of the first Linear layer, counts the hooks on all modules and the optimizer's
    step pre-hooks, with the step; at the end of training, what is left. Its own probe is a global forward
    pre-hook, which no module's hook dicts hold, and it counts per optimizer step whatever runs the loop."""

    seen: list[tuple[int, int, int]] = []  # (global step, module hooks, optimizer step pre-hooks)
    left: tuple[int, int, int] = (
        0,
        0,
        0,
    )  # (module hooks, optimizer pre-hooks, optimizer post-hooks) at the end

    def on_train_start(self, trainer, pl_module):
        first = next(m for m in pl_module.modules() if isinstance(m, torch.nn.Linear))

        def probe(module, args):
            if module is first and torch.is_grad_enabled():
                HookProbe.seen.append((trainer.global_step, *self.counts(trainer, pl_module)[:2]))

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(probe)

    def on_train_end(self, trainer, pl_module):
        self.handle.remove()
        HookProbe.left = self.counts(trainer, pl_module)

    @staticmethod
    def counts(trainer, pl_module) -> tuple[int, int, int]:
        module_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pl_module.modules())
        optimizer = trainer.optimizers[0]
        return (
            module_hooks,
            len(optimizer._optimizer_step_pre_hooks),
            len(optimizer._optimizer_step_post_hooks),
        )


PROBE = "+callbacks.probe._target_=test_diagnostics.HookProbe"


def test_without_diagnostics_no_hook_is_ever_registered(make_config):
    HookProbe.seen = []
    cfg = make_config(PROBE, "trainer.max_steps=6", *FAST)
    run_job(cfg)
    assert [step for step, _, _ in HookProbe.seen] == [0, 1, 2, 3, 4, 5]
    assert all(hooks == pre == 0 for _, hooks, pre in HookProbe.seen)
    assert HookProbe.left == (0, 0, 0)
    assert not csv_of(cfg).exists()


def test_forward_hooks_exist_only_around_diagnostic_steps(make_config):
    HookProbe.seen = []
    cfg = make_config(
        PROBE, "callbacks=diagnostics", "callbacks.diagnostics.every_n_steps=3", "trainer.max_steps=7", *FAST
    )
    run_job(cfg)
    assert [step for step, _, _ in HookProbe.seen] == list(range(7))
    armed = [step for step, hooks, pre in HookProbe.seen if hooks and pre == 1]
    assert armed == [0, 3, 6]
    assert all(hooks == pre == 0 for step, hooks, pre in HookProbe.seen if step not in armed)
    assert HookProbe.left == (0, 0, 0)  # all removed at the end, the step counter too
    assert sorted({row.step for row in read_rows(csv_of(cfg))}) == [0, 3, 6]


def test_resumed_run_appends_without_rewriting_or_repeating_rows(small_mlp, tmp_path):
    """A run killed after step 5 with its last checkpoint at step 4 wrote rows for 0, 2, 4; resumed from the
    checkpoint it writes 6 and 8 only, after the untouched earlier bytes."""
    network, dm = small_mlp()
    path = tmp_path / "diagnostics.csv"
    last = ModelCheckpoint(dirpath=tmp_path, save_last=True, save_top_k=0, every_n_train_steps=4)
    _fit(network, dm, [LayerDiagnostics(tmp_path, every_n_steps=2), last], max_steps=5)
    first = path.read_bytes()
    assert sorted({r.step for r in read_rows(path)}) == [0, 2, 4]
    network, dm = small_mlp()
    _fit(
        network,
        dm,
        [LayerDiagnostics(tmp_path, every_n_steps=2)],
        max_steps=9,
        ckpt_path=str(tmp_path / "last.ckpt"),
    )
    assert path.read_bytes().startswith(first)
    steps = [r.step for r in read_rows(path) if r.layer == "head"]
    assert steps == [0, 2, 4, 6, 8]


def _rows(step_stds: dict[int, list[float]]) -> list[LayerRow]:
    return [
        LayerRow(step, i, f"body.{2 * i + 1}", 0.0, std, 0.1, None, 0.5, 1e-3)
        for step, stds in step_stds.items()
        for i, std in enumerate(stds)
    ]


def test_diagnose_draws_the_heatmaps_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    append_rows(run / "diagnostics.csv", _rows({0: [1.0, 0.1, 0.01], 10: [1.0, 0.5, 0.2]}))
    with (run / "diagnostics.csv").open("a") as handle:
        handle.write("20,0,bod")  # a line cut short by a kill is skipped
    result = run_cli(["trainspeed.diagnose", str(run)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = {"diagnostics_act_std.png", "diagnostics_grad_norm.png", "diagnostics_update_ratio.png"}
    names.add("diagnostics_inactive.png")
    assert {p.name for p in (run / "plots").iterdir()} == names
    assert all((run / "plots" / n).read_bytes().startswith(PNG) for n in names)
    assert result.stdout.count("diagnostics_") == 4


def test_diagnose_without_diagnostics_csv_is_one_line_and_exit_2(tmp_path):
    result = run_cli(["trainspeed.diagnose", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path} has no diagnostics.csv (record one by training with callbacks=diagnostics)"
    ]


def test_report_gains_heatmaps_when_runs_recorded_diagnostics(tmp_path):
    sweep = tmp_path / "sweep"
    for job, (init, seed) in enumerate([("xavier_normal", 0), ("xavier_normal", 1), ("kaiming_normal", 0)]):
        folder = make_job(sweep, job, [f"initializer={init}", f"seed={seed}"], seconds=1.0 + job)
        stds = [1.0, 0.01, 1e-4] if init == "xavier_normal" else [1.0, 0.9, 0.8]
        append_rows(folder / "diagnostics.csv", _rows({0: stds, 5: stds}))
    report = build_report(sweep, print_table=False)
    plots = {p.name for p in report.plot_paths}
    assert {"diagnostics_act_std.png", "diagnostics_grad_norm.png"} <= plots
    markdown = report.md_path.read_text()
    assert (
        "## Layer diagnostics" in markdown
        and "![std of each layer's output](plots/diagnostics_act_std.png)" in markdown
    )
    assert report.html_path.read_text().count("data:image/png;base64,") == markdown.count("![")


def test_report_without_diagnostics_has_no_such_section(tmp_path):
    make_job(tmp_path / "sweep", 0, ["optimizer=adam"], seconds=1.0)
    report = build_report(tmp_path / "sweep", print_table=False)
    assert "Layer diagnostics" not in report.md_path.read_text()
    assert not any(p.name.startswith("diagnostics_") for p in report.plot_paths)


class SeveralStepsPerIteration(pl.LightningModule):
    """Manual optimization running 3 optimizer steps per Lightning iteration on the plain torch optimizer, each
    counted in global_step: the loop design in which Lightning's batch hooks fire once per 3 steps. Records the
    mean of the first layer's output at every step, computed apart from the module (no hook sees it)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network, self.automatic_optimization = network, False
        self.first_layer_means: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        optimizer = self.optimizers().optimizer
        progress = self.trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
        first = self.network.body[1]
        for part in range(3):
            xs, ys = x[part::3], y[part::3]
            self.first_layer_means.append(float(F.linear(xs.flatten(1), first.weight, first.bias).mean()))
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(self.network(xs), ys).backward()
            optimizer.step()
            progress.increment_ready()
            progress.increment_completed()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_several_optimizer_steps_per_iteration_are_each_diagnosed_on_their_own_forward(small_mlp, tmp_path):
    network, dm = small_mlp()
    module = SeveralStepsPerIteration(network)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=9,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[LayerDiagnostics(tmp_path, every_n_steps=2)],
    )
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 9
    first = [row for row in read_rows(tmp_path / "diagnostics.csv") if row.position == 0]
    assert [row.step for row in first] == [0, 2, 4, 6, 8]
    for row in first:
        assert row.act_mean == pytest.approx(module.first_layer_means[row.step], rel=1e-4, abs=1e-6)
        assert row.grad_norm > 0 and row.update_ratio > 0


def test_a_fresh_start_in_a_folder_with_diagnostics_sets_the_old_file_aside(small_mlp, tmp_path):
    append_rows(tmp_path / "diagnostics.csv", _rows({0: [1.0], 10: [1.0]}))
    before = (tmp_path / "diagnostics.csv").read_bytes()
    network, dm = small_mlp()
    _fit(network, dm, [LayerDiagnostics(tmp_path, every_n_steps=2)], max_steps=3)
    assert (tmp_path / "diagnostics.1.csv").read_bytes() == before
    assert sorted({r.step for r in read_rows(tmp_path / "diagnostics.csv")}) == [0, 2]


def test_wandb_run_holds_the_diagnostics_and_the_watched_histograms(tmp_path):
    """`logger=wandb`, `logger.wandb.watch=all`: the W&B history has a chart per layer and statistic, and W&B's
    gradient and parameter histograms (read back with W&B's own reader)."""
    from test_wandb import isolated_env, offline_run_dir, run_records, train

    args = ["callbacks=diagnostics", "callbacks.diagnostics.every_n_steps=5", "trainer.max_steps=10", *FAST]
    args += [
        "logger=wandb",
        "logger.wandb.watch=all",
        "logger.wandb.watch_log_freq=5",
        f"hydra.run.dir={tmp_path}",
    ]
    result = train([a for a in args if a != "logger=csv"], tmp_path, isolated_env(tmp_path / "home"))
    assert result.returncode == 0, result.stderr[-3000:]
    history = [item["item"] for item in run_records(offline_run_dir(tmp_path))["history"]]
    keys = {key for item in history for key in item}
    assert {"diag_act_std/00_body_1", "diag_grad_norm/02_head", "diag_update_ratio/01_body_3"} <= keys
    assert any(key.startswith("gradients/body.1.weight") for key in keys)
    assert any(key.startswith("parameters/body.1.weight") for key in keys)
    diag_steps = sorted(
        int(item["trainer/global_step"]) for item in history if "diag_act_std/00_body_1" in item
    )
    assert diag_steps == [0, 5]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "logger.wandb.watch=grads",
            "logger.wandb.watch='grads' is not valid (unknown name); accepted: did you mean",
        ),
        (
            "logger.wandb.watch_log_freq=0",
            "logger.wandb.watch_log_freq=0 is not valid; accepted: an integer ≥ 1",
        ),
        ("callbacks.diagnostics.every_n_steps=0", "callbacks.diagnostics.every_n_steps=0 is not valid"),
    ],
)
def test_bad_diagnostics_or_watch_settings_are_refused_by_name(make_config, override, message):
    from trainspeed.errors import ConfigError
    from trainspeed.validation import validate

    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(make_config("callbacks=diagnostics", override))


def test_a_compiled_network_keeps_gradient_and_update_statistics(small_mlp, tmp_path):
    """A compiled graph skips module hooks registered after tracing: the activation statistics are left empty
    rather than wrong, the optimizer's are recorded."""
    network, dm = small_mlp()
    _fit(
        torch.compile(network, backend="eager"),
        dm,
        [LayerDiagnostics(tmp_path, every_n_steps=1)],
        max_steps=2,
    )
    rows = read_rows(tmp_path / "diagnostics.csv")
    assert sorted({r.step for r in rows}) == [0, 1] and {r.layer for r in rows} == {
        "body.1",
        "body.3",
        "head",
    }
    assert all(r.act_std is None and r.dead_fraction is None for r in rows)
    assert all(r.grad_norm > 0 and r.update_ratio > 0 for r in rows)
