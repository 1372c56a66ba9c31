"""Random-number-generator states in checkpoints, so a resumed run draws the same numbers (dropout, augmentation)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from pytorch_lightning.callbacks import Callback


class RngState(Callback):
    """Saves the Python, NumPy, torch CPU (and CUDA) generator states with every checkpoint and restores them.

    Lightning checkpoints the model, optimizer, schedulers and loop progress but not the global generators; data
    order needs none of them here (it is seeded from (seed, epoch)), but dropout and random layers do.
    """

    def state_dict(self) -> dict[str, Any]:
        # plain lists and tensors only: checkpoints load with torch.load(weights_only=True)
        name, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "python": list(random.getstate()),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])
