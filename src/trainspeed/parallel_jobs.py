"""Sweep jobs that run side by side (Hydra's joblib and submitit launchers): threads, GPUs, DDP processes.

The launchers themselves are Hydra's plugins; what they leave to the task is sharing the machine. A job of a
parallel sweep limits its torch threads so that N concurrent jobs do not oversubscribe the cores, takes its own GPU
when the machine has several, and, under submitit with one task per device, joins the job's DDP process group
from submitit's environment (Lightning then starts no processes itself). Nothing here runs for a single run or a
sweep on the basic launcher.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from trainspeed.errors import ConfigError

log = logging.getLogger("trainspeed")

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher."
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _launcher() -> tuple[str, DictConfig] | None:
    """The multirun launcher's class name and config, or None outside a multirun."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return str(hydra_cfg.launcher.get("_target_", "")), hydra_cfg.launcher


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def concurrent_jobs(target: str, launcher: DictConfig, cores: int) -> int:
    """How many jobs of the sweep run at the same time on this machine (1 for the basic launcher)."""
    if target == JOBLIB:
        n_jobs = int(launcher.get("n_jobs") or 1)
        return cores if n_jobs < 0 else n_jobs  # joblib: -1 = one job per core
    return 1


def _is_ddp(trainer: DictConfig) -> bool:
    strategy = str(trainer.get("strategy", "auto"))
    return "ddp" in strategy or "fsdp" in strategy


def check_sweep_launcher(cfg: DictConfig) -> None:
    """Refuse DDP in a sweep whose launcher cannot give it one process per device.

    Lightning starts DDP's extra processes by re-running the command line, which in a `-m` sweep would re-run the
    whole sweep; under submitit each job is a group of `tasks_per_node` processes instead.
    """
    launcher = _launcher()
    if launcher is None or not _is_ddp(cfg.trainer):
        return
    target, config = launcher
    devices = cfg.trainer.get("devices")
    how = "hydra/launcher=submitit_local (or submitit_slurm) with hydra.launcher.tasks_per_node=<trainer.devices>"
    if not target.startswith(SUBMITIT):
        raise ConfigError(
            "trainer.strategy",
            str(cfg.trainer.strategy),
            f"{how} for DDP in a -m sweep, or trainer.devices=1 trainer.strategy=auto",
            problem=f"one process per device is needed and hydra/launcher={target.rsplit('.', 1)[-1]} runs jobs "
            "in one process each",
        )
    tasks = config.get("tasks_per_node")
    if isinstance(devices, int) and tasks != devices:
        raise ConfigError(
            "hydra.launcher.tasks_per_node",
            tasks,
            f"trainer.devices={devices} (one submitit task per device)",
        )


def _thread_count(target: str, launcher: DictConfig) -> int | None:
    """Torch threads for this job: set by the user (OMP_NUM_THREADS) or cores / concurrent jobs."""
    if target.startswith(SUBMITIT):
        cpus = launcher.get("cpus_per_task")
        return int(cpus) if cpus else None
    jobs = concurrent_jobs(target, launcher, _cores())
    if jobs <= 1:
        return None
    # joblib's workers inherit OMP_NUM_THREADS when the user set it, else joblib sets it to cores // n_jobs
    user = os.environ.get("OMP_NUM_THREADS")
    return int(user) if user and user.isdigit() else max(1, _cores() // jobs)


def _gpu_for_job(cfg: DictConfig, job_num: int, jobs: int) -> int | None:
    """Job number modulo the GPU count: with n_jobs <= GPUs the concurrent jobs use distinct GPUs."""
    trainer = cfg.trainer
    if jobs <= 1 or _is_ddp(trainer) or trainer.get("devices") not in ("auto", None):
        return None
    if str(trainer.get("accelerator", "auto")) not in ("auto", "gpu", "cuda"):
        return None
    import torch

    count = torch.cuda.device_count()
    return job_num % count if count > 1 else None


def prepare_parallel_job(cfg: DictConfig) -> dict[str, Any]:
    """Threads, GPU and DDP environment for a job of a parallel sweep; returns what was set (for the log)."""
    launcher = _launcher()
    if launcher is None:
        return {}
    target, config = launcher
    chosen: dict[str, Any] = {}
    threads = _thread_count(target, config)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
        chosen["threads"] = threads
    gpu = _gpu_for_job(cfg, HydraConfig.get().job.num, concurrent_jobs(target, config, _cores()))
    if gpu is not None:
        with open_dict(cfg):
            cfg.trainer.accelerator, cfg.trainer.devices = "gpu", [gpu]
        chosen["gpu"] = gpu
    if target.startswith(SUBMITIT) and _is_ddp(cfg.trainer) and int(config.get("tasks_per_node") or 1) > 1:
        _export_submitit_ddp_environment()
        chosen["ddp"] = "submitit"
    if chosen:
        log.info("parallel sweep job: %s", ", ".join(f"{k}={v}" for k, v in chosen.items()))
    return chosen


def _export_submitit_ddp_environment() -> None:
    """MASTER_ADDR, RANK, WORLD_SIZE, LOCAL_RANK, ... from submitit: Lightning then joins this process group
    instead of launching processes itself (under SLURM it reads SLURM's variables; these agree with them)."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "local":  # under SLURM Lightning's SLURMEnvironment takes over
        return
    from submitit.helpers import TorchDistributedEnvironment

    TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
