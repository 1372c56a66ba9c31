#!/usr/bin/env bash
# Pretrain a small timm backbone on the source task of the `transfer` experiment (digits 0-4, bundled with
# scikit-learn, no download) and export its weights in timm's format (safetensors), ready for model.weights=FILE.
#
#   scripts/pretrain_backbone.sh                         # -> outputs/pretrained/test_resnet.safetensors
#   scripts/pretrain_backbone.sh trainer.max_epochs=20   # extra arguments are trainspeed.train overrides
#   MODEL=resnet10t IMAGE_SIZE=32 scripts/pretrain_backbone.sh
#
# MODEL (default test_resnet), IMAGE_SIZE (16), EPOCHS (15), OUT (outputs/pretrained/$MODEL.safetensors in the
# repository) and RUN_DIR (outputs/pretrained/$MODEL-runs/<timestamp>, the training run) choose what is trained and
# where it goes; a relative OUT or RUN_DIR is taken from the folder the script is run in.
# The exported file holds the best checkpoint's network (by val/acc); its classifier is replaced on loading.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-}
if [[ -z $python ]]; then
  if [[ -z ${VIRTUAL_ENV:-} && -x $repo/.venv/bin/python ]]; then python=$repo/.venv/bin/python; else python=python; fi
fi
model=${MODEL:-test_resnet}
# OUT, RUN_DIR and paths among the overrides are the caller's (relative to the folder it runs in); the defaults
# are in the repository's outputs/
out=${OUT:-$repo/outputs/pretrained/$model.safetensors}
run_dir=${RUN_DIR:-$repo/outputs/pretrained/$model-runs/$(date +%Y-%m-%d_%H-%M-%S)}

"$python" -m trainspeed.train \
  model=timm model.name="$model" \
  data=digits 'data.classes=[0,1,2,3,4]' data.image_size="${IMAGE_SIZE:-16}" \
  trainer.max_epochs="${EPOCHS:-15}" target.stop=false run_test=false \
  hydra.run.dir="$run_dir" "$@"
"$python" -c 'import sys; from trainspeed.model.pretrained import export_weights; print("exported", export_weights(*sys.argv[1:]))' \
  "$run_dir" "$out"
