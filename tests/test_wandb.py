"""Weights & Biases: one run per job, offline without an account, never a credential on disk; read back with W&B's
own reader (`wandb leet inspect`), never the network (the server address points at a closed local port)."""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from trainspeed.errors import ConfigError
from trainspeed.tracking.mode import resolve_mode
from trainspeed.tracking.naming import run_name, run_tags
from trainspeed.tracking.redact import MASK, scrub, secret_values

REPO = Path(__file__).resolve().parents[1]
WANDB_CLI = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
FAST = ["trainer.max_epochs=2", "trainer.enable_progress_bar=false", "run_test=false", "target.value=0.8"]
# well-formed as a W&B API key (40+ characters) and no one's
SENTINEL = "trainspeedsentinel" + "0123456789" * 3
FAILING_JOB = ["+callbacks.fail._target_=test_wandb.fail_in_fit", "+callbacks.fail.job=0"]


def fail_in_fit(job: int):
    """A Lightning callback that fails job `job` of a sweep in its first training epoch, after its W&B run started
    (built in the training process, so this test module never imports torch)."""
    from hydra.core.hydra_config import HydraConfig
    from pytorch_lightning.callbacks import Callback

    class FailInFit(Callback):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if HydraConfig.get().job.num == job:
                raise RuntimeError("injected failure in fit")

    return FailInFit()


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """No W&B setting, key or login from this machine; W&B's server is a closed local port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_DATA_DIR=str(home / "data"),
        NETRC=str(home / "no-netrc"),
        WANDB_BASE_URL="http://127.0.0.1:9",
        PYTHONPATH=os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")]),
    )
    env.update(extra)
    return env


def train(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainspeed.train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def offline_run_dir(job: Path) -> Path:
    runs = sorted((job / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline W&B run in {job}: {runs}"
    return runs[0]


def inspect(run_dir: Path, *flags: str) -> str:
    out = subprocess.run(
        [WANDB_CLI, "leet", "inspect", "--json", *flags, str(run_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def run_state(run_dir: Path) -> dict:
    """State, exit code, config and summary of a run, from its .wandb file."""
    return json.loads(inspect(run_dir, "--summary"))


def run_records(run_dir: Path) -> dict[str, list[dict]]:
    """The .wandb file's records by type (run, history, summary, exit, ...)."""
    records: dict[str, list[dict]] = {}
    for line in inspect(run_dir).splitlines():
        record = json.loads(line)
        records.setdefault(record["type"], []).append(record[record["type"]])
    return records


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A 3-job in-process multirun (job 0 fails in fit, jobs 1 and 2 complete) with an API key in the environment
    and no mode: each job tries W&B online, finds no server and logs offline. One config entry interpolates the
    key. Each job's run is read back once: its state (`--summary`) and its records."""
    cwd = tmp_path_factory.mktemp("sweep")
    sweep_dir = cwd / "optimizer-sweep"
    args = ["-m", "optimizer=sgd,adam,momentum", *FAST, *FAILING_JOB, f"hydra.sweep.dir={sweep_dir}"]
    args += ["logger.wandb.init_timeout=2", "+logger.wandb.notes=${oc.env:WANDB_API_KEY}"]
    result = train(args, cwd, isolated_env(cwd / "home", WANDB_API_KEY=SENTINEL))
    assert result.returncode == 1, result.stderr[-3000:]  # job 0 failed: the sweep says so
    runs = {}
    for job in range(3):
        run_dir = offline_run_dir(sweep_dir / str(job))
        runs[job] = {"dir": run_dir, "state": run_state(run_dir), "records": run_records(run_dir)}
    return result, cwd, sweep_dir, runs


def test_each_job_of_a_sweep_is_its_own_run_in_the_sweeps_group(sweep):
    _, cwd, sweep_dir, runs = sweep
    assert not (cwd / "wandb").exists()  # run files stay in the job folders
    for job, optimizer in ((1, "adam"), (2, "momentum")):
        run, state = runs[job]["records"]["run"][0], runs[job]["state"]
        record = json.loads((sweep_dir / str(job) / "summary.json").read_text())
        assert run["run_group"] == "optimizer-sweep"
        assert run["job_type"] == "train"
        assert run["display_name"] == f"optimizer={optimizer}"  # only what the sweep varies
        assert "optimizer:" + optimizer in run["tags"] and "data:digits" in run["tags"]
        assert state["state"] == "finished" and state["exit_code"] == 0
        assert state["config"]["optimizer"]["lr"] == record_lr(sweep_dir / str(job))
        assert state["config"]["trainer"]["max_epochs"] == 2  # the whole resolved config, nested
        summary = state["summary"]
        assert summary["status"] == "completed" and summary["reached_target"] is True
        assert summary["time_to_target/seconds"] == record["time_to_target"]["seconds"] > 0
        assert summary["time_to_target/steps"] == record["time_to_target"]["steps"]
        assert summary["val/acc_best"] == pytest.approx(record["metrics"]["val/acc_best"], abs=1e-5)
        assert summary["inputs/data"] == record["inputs"]["data"] and summary["inputs/data"].startswith(
            "sha256:"
        )
    assert len({run["state"]["run_id"] for run in runs.values()}) == 3


def record_lr(job: Path) -> float:
    return OmegaConf.load(job / ".hydra" / "config.yaml").optimizer.lr


def test_history_holds_the_metrics_of_metrics_csv(sweep):
    _, _, sweep_dir, runs = sweep
    with open(sweep_dir / "1" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    history = [item["item"] for item in runs[1]["records"]["history"]]
    assert len(history) == len(rows) > 0
    assert any("val/acc" in item for item in history)
    # the learning rate is logged once, as `lr` (no second, optimizer-named copy such as `lr-Adam`)
    assert any("lr" in item for item in history)
    assert not [key for item in history for key in item if key.startswith("lr-")]
    for row, item in zip(rows, history, strict=True):
        assert int(row["step"]) == item["trainer/global_step"]
        for key, value in row.items():
            if key != "step" and value != "":
                assert item[key] == pytest.approx(float(value), rel=1e-6), key


def test_a_failed_job_ends_its_run_failed_and_the_next_job_starts_a_new_run(sweep):
    _, _, _, runs = sweep
    failed, after = runs[0]["state"], runs[1]["state"]
    assert failed["state"] == "failed" and failed["exit_code"] == 1
    assert failed["summary"]["status"] == "failed"
    assert "injected failure in fit" in failed["summary"]["error"]
    assert after["run_id"] != failed["run_id"]
    assert after["state"] == "finished"


def test_online_without_network_falls_back_offline_with_one_warning_per_job(sweep):
    result, _, sweep_dir, runs = sweep
    output = result.stdout + result.stderr
    warnings = [line for line in output.splitlines() if "W&B online mode unavailable" in line]
    assert len(warnings) == 3 and all("offline" in line for line in warnings), output[-4000:]
    # only the first job waited for the server: the later ones knew it was unreachable
    assert ["earlier in this process" in line for line in warnings] == [False, True, True]
    for job in (1, 2):
        assert json.loads((sweep_dir / str(job) / "summary.json").read_text())["status"] == "completed"
        assert runs[job]["state"]["state"] == "finished"


def test_no_api_key_from_the_environment_reaches_the_disk(sweep):
    _, cwd, _, runs = sweep
    assert runs[1]["state"]["config"]["logger"]["wandb"]["notes"] == MASK
    # the .wandb file stores strings as they are: what the scan below would find if the key were there
    wandb_file = next(runs[1]["dir"].glob("*.wandb")).read_bytes()
    assert runs[1]["state"]["run_id"].encode() in wandb_file and b"optimizer-sweep" in wandb_file
    leaks = [p for p in cwd.rglob("*") if p.is_file() and SENTINEL.encode() in p.read_bytes()]
    assert leaks == []


@pytest.mark.slow
def test_ddp_logs_one_run_from_rank_zero(tmp_path):
    """Two CPU processes (gloo): one W&B run, written by rank zero, with the job's outcome."""
    result = train(
        [*FAST, "trainer=ddp_cpu", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, isolated_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = run_state(offline_run_dir(tmp_path / "run"))  # exactly one run in the folder
    assert state["state"] == "finished" and state["summary"]["status"] == "completed"
    assert state["summary"]["val/acc"] > 0
    assert "sync_dist" not in result.stdout + result.stderr  # the metrics are reduced by torchmetrics already


@pytest.mark.parametrize(
    ("setting", "env", "expected"),
    [
        (None, {}, "offline"),  # no key, no mode
        (None, {"WANDB_API_KEY": SENTINEL}, "online"),
        (None, {"WANDB_MODE": "dryrun"}, "offline"),
        ("auto", {"WANDB_MODE": "disabled", "WANDB_API_KEY": SENTINEL}, "disabled"),
        ("offline", {"WANDB_API_KEY": SENTINEL}, "offline"),
        ("online", {"WANDB_MODE": "offline"}, "online"),  # the config is explicit: it wins
    ],
)
def test_mode_comes_from_the_config_then_wandb_mode_then_the_api_key(
    monkeypatch, tmp_path, setting, env, expected
):
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert resolve_mode(setting) == expected


@pytest.mark.parametrize(
    ("setting", "env", "key"),
    [("sometimes", {}, "logger.wandb.mode"), (None, {"WANDB_MODE": "cloud"}, "WANDB_MODE")],
)
def test_a_bad_mode_names_where_it_came_from(monkeypatch, setting, env, key):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=rf"{key}=.* accepted: online, offline, disabled"):
        resolve_mode(setting)


def test_run_name_is_the_swept_overrides_in_short_form():
    overrides = [
        "optimizer=adam",
        "optimizer.lr=0.01",
        "trainer.max_epochs=2",
        "hydra.run.dir=x",
        "+logger.wandb.notes=n",
    ]
    assert run_name(overrides, {"optimizer", "optimizer.lr"}) == "optimizer=adam,lr=0.01"
    assert run_name(overrides) == "optimizer=adam,lr=0.01,max_epochs=2"  # a single run: all of them
    assert run_name(["hydra.run.dir=x"]) == "defaults"


def test_tags_are_the_experiment_and_the_technique_per_axis(tmp_path):
    from conftest import compose_config  # here: the training processes import this module, never conftest

    long_name = "a-study-whose-name-goes-on-" * 4
    cfg = compose_config(["optimizer=nesterov", "model=timm", f"experiment_name={long_name}"], tmp_path)
    tags = run_tags(cfg, ["mine"])
    assert tags[0] == long_name[:64] and all(len(t) <= 64 for t in tags)
    assert {"optimizer:nesterov", "model:resnet18", "initializer:default", "mine"} <= set(tags)


def test_scrub_masks_credentials_from_the_environment_only():
    env = {"WANDB_API_KEY": SENTINEL, "HF_TOKEN": "hf_abcdefghij", "DEBUG": "true", "HOME": "/home/someone"}
    secrets = secret_values(env)
    assert secrets == [SENTINEL, "hf_abcdefghij"]
    data = {"a": [f"key={SENTINEL}", ("hf_abcdefghij",)], "home": "/home/someone", 3: 1.5}
    assert scrub(data, secrets) == {"a": ["key=***", ("***",)], "home": "/home/someone", 3: 1.5}


def sweep_combinations(parameters: dict) -> list[dict]:
    """Every grid combination; for a distribution its bounds and their (geometric) middle."""
    axes = {}
    for key, spec in parameters.items():
        if "values" in spec:
            axes[key] = spec["values"]
        elif "value" in spec:
            axes[key] = [spec["value"]]
        else:
            low, high = spec["min"], spec["max"]
            middle = math.sqrt(low * high) if "log" in spec["distribution"] else (low + high) / 2
            axes[key] = [low, middle, high]
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


@pytest.mark.parametrize(
    "spec_file", sorted((REPO / "scripts" / "wandb_sweeps").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_sweep_combination_composes_as_hydra_overrides(spec_file, tmp_path):
    """What the W&B agent would run for each combination composes, passes validation, and sets the parameters."""
    from conftest import compose_config
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args  # the W&B agent's own

    from trainspeed.validation import validate

    spec = yaml.safe_load(spec_file.read_text())
    assert spec["command"] == ["${env}", "python", "-m", "trainspeed.train", "${args_no_hyphens}"]
    assert spec["metric"] == {"name": "time_to_target/seconds", "goal": "minimize"}
    combinations = sweep_combinations(spec["parameters"])
    assert len(combinations) >= 3
    for params in combinations:
        args = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
        cfg = compose_config(args["args_no_hyphens"], tmp_path)
        validate(cfg)
        for key, value in params.items():
            if key in cfg.hydra.runtime.choices:  # a config group: the option was chosen
                assert cfg.hydra.runtime.choices[key] == value
            else:
                assert OmegaConf.select(cfg, key) == pytest.approx(value)


@pytest.mark.parametrize(
    "spec_file", sorted((REPO / "scripts" / "wandb_sweeps").glob("*.yaml")), ids=lambda p: p.stem
)
def test_a_run_of_a_wandb_sweep_agent_records_the_whole_config(spec_file, tmp_path):
    """A run started as the W&B agent starts one (its parameters file, sweep id and run id in the environment):
    the swept keys keep the sweep's values, the other settings of a swept config group are there as dotted keys
    (the optimizer's own learning rate, betas, ...), every other section nested as in a run without a sweep."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args  # the W&B agent's own
    from wandb.sdk.lib.config_util import save_config_file_from_dict

    spec = yaml.safe_load(spec_file.read_text())
    params = sweep_combinations(spec["parameters"])[1]
    agent_args = {k: {"value": v} for k, v in params.items()}
    save_config_file_from_dict(str(tmp_path / "params.yaml"), agent_args)  # what the agent writes
    args = create_sweep_command_args({"args": agent_args})["args_no_hyphens"]
    env = isolated_env(tmp_path / "home", WANDB_MODE="offline", WANDB_SWEEP_ID="abc123", WANDB_RUN_ID="swrun1",
                       WANDB_SWEEP_PARAM_PATH=str(tmp_path / "params.yaml"))  # fmt: skip
    result = train([*args, *FAST, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "was locked" not in result.stdout + result.stderr  # nothing W&B refused
    config = run_state(offline_run_dir(tmp_path / "run"))["config"]
    for key, value in params.items():  # the group `optimizer`: the option the sweep chose
        assert config[key] == pytest.approx(value), key
    optimizer = OmegaConf.to_container(OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml").optimizer)
    assert {"name", "lr", "weight_decay"} <= set(optimizer)
    for key, value in optimizer.items():  # lr: the sweep's, else the optimizer's own default
        assert config[f"optimizer.{key}"] == pytest.approx(value), key
    assert config["trainer"]["max_epochs"] == 2 and config["model"]["depth"] >= 1  # nested, unswept
    assert not [key for key in config if key.startswith(("trainer.", "model."))]


def test_wandb_sweep_script_creates_the_sweep_and_starts_an_agent(tmp_path):
    fake = tmp_path / "bin" / "wandb"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$WANDB_MODE $*" >> {tmp_path}/calls\n'
        '[[ $1 == sweep ]] && printf "wandb: Run sweep agent with: \\e[33mwandb agent me/trainspeed/abc123\\e[0m\\n" >&2\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
        "VIRTUAL_ENV": str(tmp_path),
    }
    script = str(REPO / "scripts" / "wandb_sweep.sh")
    spec = "scripts/wandb_sweeps/optimizers.yaml"
    done = subprocess.run(
        [script, spec, "--count", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"online sweep --project trainspeed {spec}",
        "online agent --count 2 me/trainspeed/abc123",
    ]
    missing = subprocess.run(
        [script, "nope.yaml"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_a_run_pruned_by_the_search_budget_says_so_in_its_summary():
    from trainspeed.record.summary import Summary, TimeToTargetRecord
    from trainspeed.tracking.wandb_logger import summary_fields

    ttt = TimeToTargetRecord(metric="val/acc", target=0.95)
    pruned = Summary(status="completed", reached_target=False, time_to_target=ttt, metrics={}, stopped_by="budget",
                     budget_seconds=2.5)  # fmt: skip
    assert (summary_fields(pruned)["stopped_by"], summary_fields(pruned)["budget_seconds"]) == ("budget", 2.5)
    missed = pruned.model_copy(update={"stopped_by": None, "budget_seconds": None})
    assert "stopped_by" not in summary_fields(missed)
