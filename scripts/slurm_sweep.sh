#!/usr/bin/env bash
# A sweep on a SLURM cluster through Hydra's submitit launcher (conf/hydra/launcher/slurm.yaml): one SLURM job per
# sweep job; this process submits them, waits, then writes the report and exits 1 if a job failed. Run it on a
# login node inside tmux / screen, from the repository (the jobs need the same Python environment and file system).
#
#   scripts/slurm_sweep.sh experiment=optimizers                         # 24 jobs, 1 GPU each
#   PARTITION=a100 TIME_MIN=30 scripts/slurm_sweep.sh experiment=optimizers_tuned
#   GPUS=4 scripts/slurm_sweep.sh trainer=ddp model=timm model.name=resnet18 optimizer=sgd,adamw   # DDP, 4 GPUs/job
#   NODES=2 GPUS=8 scripts/slurm_sweep.sh trainer=ddp ...                                             # 2 nodes/job
#   scripts/slurm_sweep.sh hparams_search=optuna hydra.sweeper.n_jobs=8  # Optuna: 8 trials at a time on the cluster
set -euo pipefail

PARTITION=${PARTITION:-}     # empty: the cluster's default partition
TIME_MIN=${TIME_MIN:-60}     # per job
NODES=${NODES:-1}
GPUS=${GPUS:-1}              # per node; with trainer=ddp one process per GPU
CPUS=${CPUS:-8}              # per process
MEM_GB=${MEM_GB:-32}         # per node
PYTHON=${PYTHON:-python}

args=(
  hydra/launcher=slurm
  "hydra.launcher.timeout_min=$TIME_MIN"
  "hydra.launcher.nodes=$NODES"
  "hydra.launcher.gpus_per_node=$GPUS"
  "hydra.launcher.tasks_per_node=$GPUS"
  "hydra.launcher.cpus_per_task=$CPUS"
  "hydra.launcher.mem_gb=$MEM_GB"
  "trainer.devices=$GPUS"
  "trainer.num_nodes=$NODES"
)
[[ -n $PARTITION ]] && args+=("hydra.launcher.partition=$PARTITION")

exec "$PYTHON" -m trainspeed.train -m "${args[@]}" "$@"
