"""Bad input is refused before training with one clear line; failures and Ctrl-C never lose a record."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import CONF, FAST, compose_config, run_cli
from damaged_files import flip_one_bit
from dataset_files import write_mnist

from trainspeed.errors import ConfigError, TrainspeedError
from trainspeed.validation import validate

# (overrides, the key the message must name, the value it must show); all refused before torch is imported
BAD_INPUTS = [
    (["+optimzer.lr=0.1"], "optimzer", "did you mean optimizer?"),
    (["+optimizer.weight_decya=0.1"], "optimizer.weight_decya", "did you mean optimizer.weight_decay?"),
    (["optimizer.lr=-0.1"], "optimizer.lr", "-0.1"),
    (["optimizer.lr=abc"], "optimizer.lr", "abc"),
    (["optimizer=momentum", "optimizer.momentum=1.0"], "optimizer.momentum", "1.0"),
    (["optimizer.betas=[0.9,1.5]"], "optimizer.betas", "1.5"),
    (["optimizer.weight_decay=-0.01"], "optimizer.weight_decay", "-0.01"),
    (["optimizer.name=adamm"], "optimizer.name", "adamm"),
    (["model.depth=0"], "model.depth", "0"),
    (["model.dropout=1.0"], "model.dropout", "1.0"),
    (["model=cnn", "model.channels=[32,0]"], "model.channels", "0"),
    (["data.batch_size=0"], "data.batch_size", "0"),
    (["trainer.max_epochs=0"], "trainer.max_epochs", "0"),
    (["trainer.min_epochs=5", "trainer.max_epochs=2"], "trainer.min_epochs", "5"),
    (["target.value=1.5"], "target.value", "1.5"),
    (["target.metric=val/loss", "target.value=-1"], "target.value", "-1"),
    (["target.metric=val/accuracy"], "target.metric", "val/accuracy"),
    (["activation.name=gelux"], "activation.name", "gelux"),
    (["normalization.name=batchnrom"], "normalization.name", "batchnrom"),
    (["model=cnn", "normalization=groupnorm", "normalization.num_groups=5"], "normalization.num_groups", "5"),
    (["finetune=linear_probe"], "finetune", "linear_probe"),
    (["trainer=ddp_cpu", "trainer.precision=16-mixed"], "trainer.precision", "16-mixed"),
    (["data.val_fraction=0.6", "data.test_fraction=0.5"], "data.val_fraction", "0.6"),
    (["data.classes=[1,12]"], "data.classes", "12"),
    (["seed=-1"], "seed", "-1"),
    (["data=imagefolder"], "data.root", "???"),
    (["data=imagefolder", "data.root=/no/such/folder"], "data.root", "/no/such/folder"),
    (["scheduler=plateau", "scheduler.monitor=val/los"], "scheduler.monitor", "val/los"),
    (["model=timm", "model.weights=/no/such/w.safetensors"], "model.weights", "/no/such/w.safetensors"),
    (
        ["callbacks.resume_checkpoint.every_n_train_steps=-5"],
        "callbacks.resume_checkpoint.every_n_train_steps",
        "-5",
    ),
    (["ckpt_path=/no/such/run/last.ckpt"], "ckpt_path", "/no/such/run/last.ckpt"),
]

# more of the same, checked in-process (a subprocess each costs a second); the timm checks import torch
MORE_BAD_INPUTS = [
    (["trainer.num_nodes=2"], "trainer.num_nodes", "nothing starts the other nodes' processes"),
    (["optimizer.lr=inf"], "optimizer.lr", "inf"),
    (["optimizer.lr=1e400"], "optimizer.lr", "inf"),  # YAML reads it as inf
    (["initializer=kaiming_normal", "initializer.gain=-inf"], "initializer.gain", "-inf"),
    (["+model.widht=3"], "model.widht", "did you mean model.width?"),
    (["+scheduler.warmup=10"], "scheduler.warmup", "unknown key"),
    (["+data.batchsize=32"], "data.batchsize", "did you mean data.batch_size?"),
    (["optimizer.lr=0"], "optimizer.lr", "0"),
    (["model.width=-8"], "model.width", "-8"),
    (["data.batch_size=1.5"], "data.batch_size", "1.5"),
    (["trainer.max_epochs=-1"], "trainer.max_epochs", "-1"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val", "-1"),
    (["trainer.limit_val_batches=0"], "trainer.limit_val_batches", "0"),
    (["divergence.max_loss_ratio=0.5"], "divergence.max_loss_ratio", "0.5"),
    (["initializer.name=he_normal"], "initializer.name", "he_normal"),
    (["finetune.name=linear"], "finetune.name", "linear"),  # validated once: the builder no longer checks it
    (["normalization=groupnorm", "normalization.num_groups=3"], "normalization.num_groups", "3"),
    (["normalization=batchnorm", "data.batch_size=1"], "data.batch_size", "1"),
    (["trainer=cpu", "trainer.sync_batchnorm=true"], "trainer.sync_batchnorm", "True"),
    (["model=timm", "model.name=resnet181"], "model.name", "resnet181"),
    (["model=timm", "model.name=inception_v3"], "data.image_size", "8"),
    (["model=timm", "model.name=vit_tiny_patch16_224", "data.image_size=32"], "data.image_size", "32"),
    (
        ["model=timm", "normalization=groupnorm", "normalization.num_groups=7"],
        "normalization.num_groups",
        "7",
    ),
    (["+callbacks.checkpoint.every_n_epochs=-1"], "callbacks.checkpoint.every_n_epochs", "-1"),
    (["callbacks.checkpoint.save_top_k=-2"], "callbacks.checkpoint.save_top_k", "-2"),
    (["callbacks.checkpoint.mode=maximum"], "callbacks.checkpoint.mode", "maximum"),
    (["+callbacks.resume_checkpoint.every_n_epochs=2"], "callbacks.resume_checkpoint.every_n_epochs", "2"),
    (  # checked by class, whatever the entry is called
        [
            "+callbacks.every_epoch._target_=pytorch_lightning.callbacks.ModelCheckpoint",
            "+callbacks.every_epoch.every_n_train_steps=-1",
        ],
        "callbacks.every_epoch.every_n_train_steps",
        "-1",
    ),  # fmt: skip
    (["ckpt_path=not-a-checkpoint.ckpt"], "ckpt_path", "not-a-checkpoint.ckpt"),
]

# makes `import torch` fail in the subprocess: a check that imported it would crash instead of refusing cleanly
NO_TORCH = "import sys\nsys.modules['torch'] = None\n"


def _torch_blocker(tmp_path: Path) -> dict[str, str]:
    blocker = tmp_path / "no_torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(NO_TORCH)
    return {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}


def test_bad_inputs_are_refused_before_training_with_one_clear_message(tmp_path):
    env = _torch_blocker(tmp_path)

    def refuse(i: int) -> subprocess.CompletedProcess:
        overrides = [*BAD_INPUTS[i][0], f"hydra.run.dir={tmp_path / f'run{i}'}"]
        return run_cli(["trainspeed.train", *overrides], cwd=tmp_path, env=env)

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(refuse, range(len(BAD_INPUTS))))
    for i, ((overrides, key, value), run) in enumerate(zip(BAD_INPUTS, runs, strict=True)):
        where = f"{overrides}: rc={run.returncode}\n{run.stderr[-2000:]}"
        assert run.returncode == 2, where
        message = run.stderr.strip().splitlines()[-1]
        assert message.startswith("trainspeed: error: "), where
        assert f"{key}=" in message and value in message, where
        assert len(run.stderr.strip().splitlines()) <= 15, where
        assert "Traceback" not in run.stderr + run.stdout, where
        # the folder Hydra created is marked failed, with the same message: never a completed-looking record
        summary = json.loads((tmp_path / f"run{i}" / "summary.json").read_text())
        assert summary["status"] == "failed" and not summary["reached_target"], where
        assert summary["metrics"] == {} and summary["steps"] == 0 and key in summary["error"], where
        assert not (tmp_path / f"run{i}" / "checkpoints").exists(), where


@pytest.mark.parametrize(("overrides", "key", "value"), MORE_BAD_INPUTS)
def test_more_bad_inputs_are_refused(tmp_path, overrides, key, value):
    with pytest.raises(TrainspeedError) as refused:
        validate(compose_config(overrides, tmp_path))
    message = str(refused.value)
    assert f"{key}=" in message and value in message and "accepted" in message


def test_closest_names_are_suggested(tmp_path):
    cases = {
        "optimizer.name=adamm": "adam",
        "activation.name=gelux": "gelu",
        "normalization.name=batchnrom": "batchnorm",
        "target.metric=val/accuracy": "val/acc",
    }
    for override, suggestion in cases.items():
        with pytest.raises(ConfigError, match=f"did you mean .*{suggestion}"):
            validate(compose_config([override], tmp_path))


def test_full_error_shows_the_traceback(tmp_path):
    run = run_cli(
        ["trainspeed.train", "optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        env={"HYDRA_FULL_ERROR": "1"},
    )
    assert run.returncode != 0
    assert "Traceback" in run.stderr and "ConfigError" in run.stderr


def test_unknown_group_option_keeps_hydras_message(tmp_path):
    run = run_cli(["trainspeed.train", "optimizer=adamm"], cwd=tmp_path)
    assert run.returncode != 0
    assert "Could not find 'optimizer/adamm'" in run.stderr
    assert "Available options in 'optimizer'" in run.stderr and "\tadamw" in run.stderr
    assert "Traceback" not in run.stderr


def _job_summaries(sweep: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))}


def _report_rows(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "report.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    """Four jobs, the last one's data files are missing: 3 completed, 1 failed with the error, report lists 4."""
    roots = [tmp_path / name for name in ("a", "b", "c", "missing")]
    for root in roots[:3]:
        write_mnist(root, n_train=100, n_test=20)
    sweep = tmp_path / "sweep"
    run = run_cli(
        ["trainspeed.train", "-m", "data=mnist", "data.root=" + ",".join(map(str, roots)), *FAST,
         "trainer.accelerator=cpu", "trainer.val_check_interval=1", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 1, run.stderr[-3000:]
    summaries = _job_summaries(sweep)
    assert sorted(summaries) == ["0", "1", "2", "3"], run.stderr[-3000:]
    assert [summaries[j]["status"] for j in "012"] == ["completed"] * 3
    failed = summaries["3"]
    assert failed["status"] == "failed" and failed["error"].startswith("DataError: data.root=")
    assert "the MNIST files are not there" in failed["error"]
    assert "job 3 failed: data.root=" in run.stderr and "Traceback" not in run.stderr
    rows = _report_rows(sweep)
    assert len(rows) == 4
    assert sorted(int(r["failed"]) for r in rows) == [0, 0, 0, 1]
    assert "missing" in next(r["config"] for r in rows if r["failed"] == "1")


def test_refused_jobs_of_a_sweep_are_recorded_without_loading_torch(tmp_path):
    sweep = tmp_path / "sweep"
    run = run_cli(
        ["trainspeed.train", "-m", "optimizer.lr=-1,0", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path,
        env=_torch_blocker(tmp_path),
    )
    assert run.returncode == 1, run.stderr[-3000:]
    summaries = _job_summaries(sweep)
    assert [s["status"] for s in summaries.values()] == ["failed", "failed"]
    assert "optimizer.lr=-1 is not valid" in summaries["0"]["error"]
    assert "optimizer.lr=0 is not valid" in summaries["1"]["error"]
    assert len(_report_rows(sweep)) == 2


def test_ctrl_c_writes_an_interrupted_record_and_a_resumable_checkpoint(tmp_path):
    """SIGINT once training runs: exit 130, status failed ("interrupted"), checkpoints/last.ckpt that resumes."""
    import pytorch_lightning as pl
    import torch

    from trainspeed.data import build_datamodule
    from trainspeed.model import build_network
    from trainspeed.training.classifier import Classifier
    from trainspeed.training.trainer_factory import build_trainer

    run_dir = tmp_path / "run"
    common = ["logger=csv", "trainer.enable_progress_bar=false", "run_test=false", "trainer.accelerator=cpu"]
    # best.ckpt appears after the first validation (training is under way); last.ckpt only on the interrupt
    args = [*common, "trainer.max_epochs=1000", "target.stop=false", "callbacks.checkpoint.save_last=false"]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainspeed.train", *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell that started the tests in the background may have SIGINT ignored: Ctrl-C must reach the run
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while not (run_dir / "checkpoints" / "best.ckpt").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.05)  # polling for a file, not waiting for time to pass
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "Traceback" not in stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "interrupted"
    last = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == summary["steps"] >= 20  # saved at the interruption, after ≥ 1 epoch
    assert {"state_dict", "optimizer_states", "loops", "callbacks"} <= set(state)
    # the interrupt took effect between iterations: the logger's step, the clock's samples and the global step
    # agree (a Ctrl-C inside a group of steps used to leave them apart, and the resumed run with them)
    assert "stopping after this training step" in stderr
    step = state["global_step"]
    assert state["loops"]["fit_loop"]["epoch_loop.state_dict"]["_batches_that_stepped"] == step
    clock = next(v for k, v in state["callbacks"].items() if "TrainClock" in k)
    assert (
        clock["samples"] == step // 20 * 1257 + step % 20 * 64
    )  # 20 batches of 64 per epoch, the last of 41

    # resume from it: training goes on from the saved step, not from zero
    epochs = state["epoch"] + 2
    cfg = compose_config([*common, f"trainer.max_epochs={epochs}"], tmp_path / "resumed")
    datamodule = build_datamodule(cfg.data, cfg.seed)
    network, _ = build_network(cfg, datamodule.input_shape, datamodule.num_classes)
    module = Classifier(network, cfg.optimizer, cfg.scheduler, datamodule.num_classes, 10)
    trainer = build_trainer(cfg).trainer

    class FirstStep(pl.Callback):
        step: int | None = None

        def on_train_batch_start(self, trainer, *args) -> None:
            FirstStep.step = trainer.global_step if FirstStep.step is None else FirstStep.step

    trainer.callbacks.append(FirstStep())
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(last))
    assert trainer.global_step == epochs * 20  # 1257 training digits / 64 per batch = 20 steps per epoch
    assert FirstStep.step == state["global_step"]


class RaiseOutOfMemory:
    """A callback that fails like a GPU running out of memory, after the first training iteration."""

    def __new__(cls):
        import pytorch_lightning as pl
        import torch

        class _Raise(pl.Callback):
            def on_train_batch_start(self, trainer, *args) -> None:
                if trainer.global_step >= 1:  # the second iteration (which may group several steps)
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        return _Raise()


def test_out_of_memory_suggests_a_smaller_batch_or_lower_precision(make_config):
    from trainspeed.errors import ResourceError
    from trainspeed.job import run_job

    cfg = make_config(
        *FAST, "trainer.accelerator=cpu", "+callbacks.oom._target_=test_robustness.RaiseOutOfMemory"
    )
    with pytest.raises(ResourceError, match=r"data\.batch_size=32.*trainer\.precision=bf16-mixed"):
        run_job(cfg)
    summary = json.loads((Path(cfg.hydra.runtime.output_dir) / "summary.json").read_text())
    assert summary["status"] == "failed"
    assert summary["error"].startswith("OutOfMemoryError: out of memory with data.batch_size=64")
    assert "Tried to allocate 2.00 GiB" in summary["error"]


def test_a_lightning_refusal_while_building_a_callback_is_one_line_naming_it(tmp_path):
    """Lightning's refusals of arguments validation does not know reach the user through Hydra's
    InstantiationException: still a user error (exit code 2, no traceback), named by its config entry."""
    from hydra.utils import instantiate

    from trainspeed.errors import is_user_error
    from trainspeed.lightning_refusal import refusal_message

    cfg = compose_config(["callbacks.checkpoint.monitor=null", "callbacks.checkpoint.save_top_k=3"], tmp_path)
    validate(cfg)
    with pytest.raises(Exception) as built:
        instantiate(cfg.callbacks.checkpoint)
    assert type(built.value).__name__ == "InstantiationException" and is_user_error(built.value)
    message = refusal_message(built.value, cfg)
    assert message.startswith("Lightning refused callbacks.checkpoint: ") and "save_top_k=3" in message
    assert "\n" not in message and "full_key" not in message
    assert not is_user_error(RuntimeError("a bug"))


def test_lightning_misconfiguration_is_a_user_error():
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from trainspeed.errors import ConfigError, is_user_error

    assert is_user_error(MisconfigurationException("No supported gpu backend found!"))
    assert is_user_error(ConfigError("optimizer.lr", -1, "a number > 0"))
    assert not is_user_error(RuntimeError("a bug"))


def test_light_name_lists_match_the_builders():
    """trainspeed/options.py lists the data sets and timm's optimizers without importing them: no drift apart."""
    from importlib import metadata

    from timm.optim import list_optimizers

    from trainspeed import options
    from trainspeed.data.sources import SOURCES

    assert set(options.DATASETS) == set(SOURCES)
    if metadata.version("timm") == options.TIMM_OPTIMIZERS_VERSION:
        assert options.TIMM_OPTIMIZERS == set(list_optimizers())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _zipped(groups: list[str]) -> list[list[str]]:
    """Rows that together use every option of every group once or more (option i of each group in row i)."""
    longest = max(len(_options(g)) for g in groups)
    return [[f"{g}={_options(g)[i % len(_options(g))]}" for g in groups] for i in range(longest)]


def test_every_shipped_option_and_experiment_passes_validation(tmp_path):
    """No false refusals: every option of every group (and every experiment preset) validates."""
    weights = tmp_path / "w.safetensors"
    weights.touch()  # validation checks that the file exists; loading it is the build's job
    images = tmp_path / "images"
    images.mkdir()
    groups = [
        "optimizer",
        "scheduler",
        "data",
        "activation",
        "initializer",
        "normalization",
        "logger",
        "callbacks",
    ]
    rows = [row + [f"data.root={images}"] if "data=imagefolder" in row else row for row in _zipped(groups)]
    rows += _zipped(["model", "trainer", "debug"])
    rows += [["model=timm", f"model.weights={weights}", f"finetune={o}"] for o in _options("finetune")]
    rows += [[f"experiment={o}", f"model.weights={weights}" if o == "transfer" else "seed=0"]
             for o in _options("experiment")]  # fmt: skip
    for row in rows:
        validate(compose_config(row, tmp_path / "run"))


def _files(run_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a run folder with its bytes and modification time."""
    return {
        str(p.relative_to(run_dir)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in run_dir.rglob("*")
        if p.is_file()
    }


def test_an_unreadable_checkpoint_to_resume_is_refused_leaving_the_run_folder_as_it_was(tmp_path):
    run = tmp_path / "run"
    args = [*FAST, "callbacks.resume_checkpoint.every_n_train_steps=10", f"hydra.run.dir={run}"]
    assert run_cli(["trainspeed.train", *args], cwd=tmp_path).returncode == 0
    last = run / "checkpoints" / "last.ckpt"
    flipped = tmp_path / "flipped.ckpt"  # one bit flipped: the zip opens, torch.load would read it
    flipped.write_bytes(last.read_bytes())
    flip_one_bit(flipped, "data.pkl")
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a copy cut short
    before = _files(run)
    env = _torch_blocker(tmp_path)  # refused before torch is imported, let alone a model built

    cases = {
        (f"resume={run}", "trainer.max_epochs=2"): ("resume=", f"{last}: not a checkpoint, or one cut short"),
        (f"resume={run}", "trainer.max_epochs=2", "ckpt_path=/no/such.ckpt"): ("ckpt_path=", "/no/such.ckpt"),
        (f"resume={run}", "trainer.max_epochs=2", f"ckpt_path={flipped}"): (
            "ckpt_path=",
            "damaged: archive/data.pkl does not match the checksum",
        ),
    }
    for overrides, (key, named) in cases.items():
        refused = run_cli(["trainspeed.train", *overrides], cwd=tmp_path, env=env)
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr
        message = refused.stderr.strip()
        assert message.startswith(f"trainspeed: error: {key}") and named in message, message
        assert "move" in message or "a checkpoint file" in message  # what to do
        assert _files(run) == before  # summary.json, .hydra/, metrics.csv and checkpoints untouched


def test_a_trainer_key_lightning_does_not_take_is_refused_in_one_line(make_config):
    from trainspeed.training.trainer_factory import build_trainer

    with pytest.raises(
        ConfigError, match=r"trainer.foo=1 is not valid \(unknown key\); accepted: the keys trainer\."
    ):
        build_trainer(make_config("+trainer.foo=1"))


def test_an_infinite_loss_ratio_turns_the_ratio_check_off_and_is_accepted(tmp_path):
    validate(compose_config(["divergence.max_loss_ratio=inf"], tmp_path))


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            "trainer.strategy=bogus",
            "Lightning refused trainer.strategy=bogus: You selected an invalid strategy name",
        ),
        (
            "trainer.devices=[5]",
            "Lightning refused trainer.devices=[5]: `devices` selected with `CPUAccelerator`",
        ),
    ],
)
def test_a_trainer_argument_lightning_refuses_with_a_python_error_is_one_line(make_config, override, says):
    from trainspeed.training.trainer_factory import build_trainer

    with pytest.raises(TrainspeedError) as refused:
        build_trainer(make_config("trainer.accelerator=cpu", override))
    assert says in str(refused.value)


def test_an_optimizer_kwarg_the_class_does_not_take_is_one_line(make_config):
    from trainspeed.model import build_network
    from trainspeed.optim.optimizers import build_optimizer

    cfg = make_config("+optimizer.kwargs.foo=1")
    network, _ = build_network(cfg, (64,), 10)
    with pytest.raises(
        ConfigError, match=r"optimizer.kwargs=\{'foo': 1\} is not valid \(.*unexpected keyword"
    ):
        build_optimizer(cfg.optimizer, network)


@pytest.mark.parametrize("content", [b"\x00\xff\xfe binary", b"a: 1\n"])
def test_a_run_folder_whose_overrides_file_is_not_a_list_is_not_a_run(tmp_path, content):
    from trainspeed.resume import resume_arguments

    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_bytes(content)
    with pytest.raises(ConfigError, match=r"resume=.* is not valid \(not a run\)"):
        resume_arguments([f"resume={tmp_path}"])


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        # counted within each 20-step epoch (Lightning's default): 50 is never reached
        (
            ["trainer.max_steps=60", "trainer.val_check_interval=50"],
            r"trainer.val_check_interval=50 is not valid \(it counts optimizer steps within each epoch, of which "
            r"there are 20: it would never validate, so never time its target\); accepted: at most 20, or "
            r"trainer.check_val_every_n_epoch=null",
        ),
        # counted across epochs, beyond the run's last step
        (
            ["trainer.max_steps=30", "trainer.val_check_interval=50", "trainer.check_val_every_n_epoch=null"],
            r"trainer.val_check_interval=50 is not valid \(the first validation would come after step 50, and "
            r"the run ends at step 30 \(trainer.max_steps=30\)",
        ),
        # by epochs, beyond the run's last epoch
        (
            ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=3"],
            r"trainer.max_epochs=2 is not valid \(the run validates at the end of every 3 epochs, first after step "
            r"60, and ends at step 40: it would never validate, so never time its target\); accepted: at least 3 "
            r"\(epochs\)",
        ),
        # within one epoch, beyond a run bounded by steps
        (
            ["trainer.max_steps=10", "trainer.check_val_every_n_epoch=1"],
            r"trainer.max_steps=10 is not valid \(the run validates at the end of every epoch, first after step 20",
        ),
    ],
)
def test_a_validation_cadence_the_run_never_reaches_is_refused(make_config, overrides, says):
    """A run timed to its target (target.stop, a sweep job's default) that would end without validating: it used
    to complete with no time to target, as if it had missed the target."""
    from trainspeed.job import run_job

    cfg = make_config(*FAST[:1], "run_test=false", "logger=csv", "target.stop=true", *overrides)
    with pytest.raises(ConfigError, match=says):
        run_job(cfg)
    summary = json.loads((Path(cfg.hydra.runtime.output_dir) / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["steps"] == 0


def test_a_run_trained_to_its_end_that_never_validates_is_warned_about(make_config, caplog):
    """A single run trained to its end (a few steps for its diagnostics, say) is let through, with a warning, and
    its record says it was never validated (no best metric)."""
    from trainspeed.job import run_job
    from trainspeed.sweep_console import outcome

    cfg = make_config(*FAST[:1], "run_test=false", "logger=csv", "trainer.max_steps=10")
    with caplog.at_level("WARNING"):
        summary = run_job(cfg)
    assert (
        summary.status == "completed" and summary.steps == 10 and summary.metrics.get("val/acc_best") is None
    )
    assert outcome(summary) == "completed without a validation (no time to target)"
    warned = [r.getMessage() for r in caplog.records if "will not validate" in r.getMessage()]
    assert warned == [
        "this run will not validate, so it will have no time to target: the run validates at the end of every "
        "epoch, first after step 20, and ends at step 10 (to validate: trainer.max_steps at least 20 (optimizer "
        "steps), or trainer.val_check_interval at most 10 (optimizer steps between validations))"
    ]


def test_a_validation_cadence_that_fits_the_run_exactly_still_validates(make_config):
    from trainspeed.job import run_job

    cfg = make_config(
        *FAST[:1],
        "run_test=false",
        "logger=csv",
        "target.stop=true",
        "trainer.max_steps=30",
        "trainer.val_check_interval=30",
        "trainer.check_val_every_n_epoch=null",
    )
    summary = run_job(cfg)
    assert summary.status == "completed" and summary.metrics["val/acc_best"] is not None
    assert summary.time_to_target.resolution_steps == 30


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (
            ["+model.weights=w.safetensors"],  # was accepted and never loaded: the record claimed the weights
            "model.weights='w.safetensors' is not valid (model=mlp does not read it); accepted: the keys model=mlp "
            "reads: depth, dropout, family, width (model.weights is read by model=timm)",
        ),
        (
            ["model=cnn", "+model.pretrained=true"],
            "model.pretrained=True is not valid (model=cnn does not read it)",
        ),
        (["model=cnn", "+model.width=512"], "(model.width is read by model=mlp)"),
        (
            ["model=timm", "model.name=test_resnet", "model.weights=w.safetensors", "model.pretrained=true"],
            "model.pretrained=True is not valid (model.weights='w.safetensors' is what would be loaded)",
        ),
        (
            [
                "model=timm",
                "model.pretrained=true",
                "finetune=linear_probe",
                "+finetune.backbone_lr_factor=0.1",
            ],
            "finetune.backbone_lr_factor=0.1 is not valid (finetune=linear_probe does not read it); accepted: the "
            "keys finetune=linear_probe reads: name (finetune.backbone_lr_factor is read by finetune=full / "
            "finetune=gradual)",
        ),
        (
            ["finetune=full", "+finetune.unfreeze_epoch=3"],
            "finetune.unfreeze_epoch=3 is not valid (finetune=full",
        ),
        (
            ["initializer=trunc_normal", "+initializer.gain=5.0"],  # trained with the fixed std, gain ignored
            "initializer.gain=5.0 is not valid (initializer=trunc_normal does not read it); accepted: the keys "
            "initializer=trunc_normal reads: name, std",
        ),
        (
            ["+initializer.gain=2.0"],
            "initializer.gain=2.0 is not valid (initializer=default does not read it)",
        ),
    ],
)
def test_a_setting_the_chosen_option_does_not_read_is_refused(make_config, overrides, says):
    from trainspeed.validation import validate

    with pytest.raises(ConfigError) as refused:
        validate(make_config(*overrides))
    assert says in str(refused.value)


def test_another_options_key_left_null_or_false_is_let_through(make_config):
    from trainspeed.validation import validate

    validate(make_config("+model.weights=null", "+model.pretrained=false"))
    validate(make_config("model=timm", "model.name=test_resnet", "finetune=scratch", "model.weights=null"))


def test_range_test_settings_given_to_a_training_run_are_refused(tmp_path):
    result = run_cli(["trainspeed.train", "+lr_find.max_lr=10", "hydra.run.dir=run"], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "trainspeed: error: lr_find={'max_lr': 10} is not valid (python -m trainspeed.train does not read it); "
        "accepted: lr_find.* with python -m trainspeed.lr_find (the learning-rate range test)"
    )


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["+optimizer.momentum=0.5"], "optimizer.momentum=0.5 is not valid (optimizer.name=adam has no momentum); "
         "accepted: an optimizer with momentum (sgd, momentum, nesterov, rmsprop, ...), or no optimizer.momentum"),
        (["optimizer=sgd", "+optimizer.betas=[0.5,0.5]"], "optimizer.betas=[0.5, 0.5] is not valid "
         "(optimizer.name=momentum has no betas)"),
        (["optimizer=momentum", "+optimizer.eps=1e-3"], "optimizer.eps=0.001 is not valid (optimizer.name=momentum "
         "has no eps)"),
        (["optimizer.name=adagrad"], None),  # adam's own betas, from its option file: left out quietly
    ],
)  # fmt: skip
def test_an_optimizer_setting_typed_for_an_optimizer_without_it_is_one_line(make_config, overrides, says):
    """momentum / betas / eps are passed only to optimizers that have them (as timm does): typed on the command
    line for another, they were ignored without a word."""
    from trainspeed.model import build_network
    from trainspeed.optim.optimizers import build_optimizer

    cfg = make_config(*overrides)
    network, _ = build_network(cfg, (64,), 10)
    if says is None:
        assert type(build_optimizer(cfg.optimizer, network)).__name__ == "Adagrad"
        return
    with pytest.raises(ConfigError) as refused:
        build_optimizer(cfg.optimizer, network)
    assert says in str(refused.value)
