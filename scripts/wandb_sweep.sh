#!/usr/bin/env bash
# Create a W&B Sweep from a spec and run an agent for it on this machine. Needs a W&B account (`wandb login` or
# WANDB_API_KEY); runs are uploaded as they go.
#
#   scripts/wandb_sweep.sh scripts/wandb_sweeps/optimizers.yaml              # agent runs until the sweep is done
#   scripts/wandb_sweep.sh scripts/wandb_sweeps/lr_search.yaml --count 10    # arguments after SPEC go to `wandb agent`
#
# WANDB_PROJECT (default trainspeed) and WANDB_ENTITY choose where the sweep lives. More agents (other shells,
# GPUs, machines) join with the `wandb agent ENTITY/PROJECT/SWEEP_ID` line this prints.
set -euo pipefail

spec=${1:?usage: scripts/wandb_sweep.sh SPEC.yaml [wandb agent arguments...]}
shift
[[ -f $spec ]] || { echo "wandb_sweep.sh: spec file not found: $spec (see scripts/wandb_sweeps/)" >&2; exit 2; }

# the spec's command runs `python -m trainspeed.train`: use the project's virtual environment unless one is active
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${VIRTUAL_ENV:-} && -x $repo/.venv/bin/python ]]; then
  PATH="$repo/.venv/bin:$PATH"
fi
# sweep runs must reach the server: override an offline default from the shell (unreachable still falls back)
export WANDB_MODE=online
project=${WANDB_PROJECT:-trainspeed}

created=$(wandb sweep --project "$project" ${WANDB_ENTITY:+--entity "$WANDB_ENTITY"} "$spec" 2>&1 | tee /dev/stderr)
sweep=$(sed -E 's/\x1b\[[0-9;]*m//g' <<<"$created" | grep -oE 'wandb agent [^[:space:]]+' | tail -n 1 | cut -d' ' -f3)
[[ -n $sweep ]] || { echo "wandb_sweep.sh: could not create the sweep (see the message above)" >&2; exit 1; }

cd "$repo"  # runs land in outputs/runs/ of this checkout
exec wandb agent "$@" "$sweep"
