"""A run folder's files, read and named in one place: `.hydra/overrides.yaml`, `.hydra/hydra.yaml`,
`.hydra/config.yaml`, `metrics.csv` and the checkpoint a run resumes from (summary.json has its own typed module,
record/summary.py).

Resume, reproduce, the sweep relaunch and the report all read these files; they do it through here, so an override
is parsed one way and a truncated metrics.csv is tolerated the same way everywhere.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

HYDRA_FOLDER = Path(".hydra")  # Hydra's record of the launch
OVERRIDES_FILE = HYDRA_FOLDER / "overrides.yaml"
HYDRA_FILE = HYDRA_FOLDER / "hydra.yaml"
CONFIG_FILE = HYDRA_FOLDER / "config.yaml"
SWEEP_FILE = "multirun.yaml"  # Hydra's, in the sweep folder
METRICS_FILE = "metrics.csv"
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"

# overrides that say where and how a run was (re)launched, not what it trains
PLACEMENT_KEYS = ("resume", "run_mode")


def override_key(override: str) -> str:
    """The config key an override sets: `+optimizer.lr=0.1` -> `optimizer.lr`, `model@x=cnn` -> `model`."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]


def override_value(override: str) -> str:
    """The value an override sets, as typed (`optimizer.lr=0.1` -> `0.1`); "" for a deletion (`~key`)."""
    return override.split("=", 1)[1] if "=" in override else ""


def is_placement(override: str) -> bool:
    """Whether an override only places or re-launches a run (hydra.*, resume=, run_mode=)."""
    key = override_key(override)
    return key.startswith("hydra.") or key in PLACEMENT_KEYS


def read_overrides(run_dir: str | Path) -> list[str] | None:
    """The overrides Hydra saved for the run (.hydra/overrides.yaml); None when there is no readable file."""
    path = Path(run_dir) / OVERRIDES_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # binary garbage reads as no file
        return None
    if data is None:  # an empty file: a run launched without overrides
        return []
    return [str(o) for o in data] if isinstance(data, list) else None


def training_overrides(run_dir: str | Path) -> list[str] | None:
    """The saved overrides that decide what the run trains: without hydra.*, resume= and run_mode=."""
    saved = read_overrides(run_dir)
    return None if saved is None else [o for o in saved if not is_placement(o)]


def _launched_config(run_dir: str | Path) -> dict:
    """The config the run was launched with, as Hydra saved it (.hydra/config.yaml: quotes and the like already
    parsed); {} when there is no readable file."""
    try:
        config = yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def launched_run_mode(run_dir: str | Path) -> str | None:
    """The run_mode the run was launched with; None when none was given or there is no readable config."""
    mode = _launched_config(run_dir).get("run_mode")
    return mode if isinstance(mode, str) else None


def launched_target_mode(run_dir: str | Path) -> str | None:
    """The run's target.mode (auto, max or min); None when there is no readable config."""
    target = _launched_config(run_dir).get("target")
    mode = target.get("mode") if isinstance(target, dict) else None
    return mode if mode in ("auto", "max", "min") else None


def _hydra_settings(run_dir: str | Path) -> dict:
    """The `hydra:` section of .hydra/hydra.yaml; empty when there is no readable file."""
    try:
        hydra = (yaml.safe_load((Path(run_dir) / HYDRA_FILE).read_text()) or {}).get("hydra") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    return hydra if isinstance(hydra, dict) else {}


def relative_inputs(run_dir: str | Path) -> list[str]:
    """The run's file settings given as relative paths (`data.root=data`, `model.weights=w.safetensors`; a data
    root from an environment variable counts when it is unset now): read from the folder a command runs in."""
    config = _launched_config(run_dir)
    data, model = config.get("data") or {}, config.get("model") or {}
    inputs = []
    if isinstance(data, dict) and data.get("name") not in ("digits", "synthetic", None):
        inputs.append(("data.root", data.get("root")))
    if isinstance(model, dict) and model.get("family") == "timm":
        inputs.append(("model.weights", model.get("weights")))
    relative = []
    for key, value in inputs:
        try:  # as the config resolves it now (the default data root is ${oc.env:TRAINSPEED_DATA,data})
            value = OmegaConf.create({"value": value}).value
        except OmegaConfBaseException:  # an interpolation of Hydra's own, unresolvable outside a job
            continue
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            relative.append(f"{key}={value}")
    return relative


def launched_as_sweep_job(run_dir: str | Path) -> bool | None:
    """Whether Hydra ran the folder as a job of a multirun (from .hydra/hydra.yaml); None when unknown."""
    mode = _hydra_settings(run_dir).get("mode")
    return None if mode is None else str(mode).upper().endswith("MULTIRUN")


def launched_from(run_dir: str | Path) -> Path | None:
    """The folder the run was launched from (hydra.runtime.cwd), which its relative paths (data.root,
    model.weights) were read from; None when unknown."""
    runtime = _hydra_settings(run_dir).get("runtime")
    cwd = runtime.get("cwd") if isinstance(runtime, dict) else None
    return Path(cwd) if isinstance(cwd, str) and cwd else None


def sweep_folder_of(run_dir: str | Path) -> Path | None:
    """The sweep folder a multirun job was launched into: the nearest folder above it with Hydra's multirun.yaml
    (hydra.yaml keeps the sweep folder's name unresolved, `${now:...}`); None for a single run or when unknown."""
    if not launched_as_sweep_job(run_dir):
        return None
    above = Path(run_dir).resolve().parents
    return next((folder for folder in above if (folder / SWEEP_FILE).is_file()), None)


def _number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def metrics_path(run_dir: str | Path) -> Path | None:
    """The run's metrics.csv: in the folder, or in CSVLogger's default layout (<name>/version_N/) if kept."""
    direct = Path(run_dir) / METRICS_FILE
    if direct.is_file():
        return direct
    nested = sorted(Path(run_dir).glob(f"**/{METRICS_FILE}"))
    return nested[0] if nested else None


def read_metrics_rows(path: str | Path) -> list[dict[str, str]]:
    """metrics.csv's rows as Lightning's CSVLogger wrote them (sparse: "" where a metric was not logged).

    Rows without a readable step (a truncated last line) are left out; a missing or unreadable file has no rows.
    """
    try:
        with Path(path).open(newline="") as handle:
            return [row for row in csv.DictReader(handle) if _number(row.get("step")) is not None]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def read_metrics_csv(path: str | Path) -> dict[str, list[tuple[float, float]]]:
    """metrics.csv as metric -> [(step, value)] in file order, finite values only."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in read_metrics_rows(path):
        step = _number(row["step"])
        for name, raw in row.items():
            if name in (None, "step", "epoch") or not raw:
                continue
            value = _number(raw)
            if value is not None:
                series.setdefault(name, []).append((step, value))
    return series


def last_logged(run_dir: str | Path, names: tuple[str, ...], up_to_step: int) -> dict[str, float]:
    """The last value metrics.csv holds for each of `names` at a step <= `up_to_step` (absent when none)."""
    path = metrics_path(run_dir)
    series = read_metrics_csv(path) if path else {}
    last: dict[str, float] = {}
    for name in names:
        values = [v for step, v in series.get(name, []) if step <= up_to_step]
        if values:
            last[name] = values[-1]
    return last
