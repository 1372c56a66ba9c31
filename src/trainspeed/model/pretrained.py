"""Pretrained weights for timm backbones, offline first.

Weights come from a local file (`model.weights`) or from the local Hugging Face cache (`model.pretrained=true`;
downloads only with HF_HUB_OFFLINE=0). Either way they are loaded by timm's own pretrained loader through
`pretrained_cfg_overlay=dict(file=...)`, which adapts the first convolution to the data's channels (for grey
images it sums the RGB kernels, which equals feeding the grey channel three times) and drops a classifier sized for
other classes. The head is always created anew for the target task. The loader returns a `LoadedWeights` record
of which tensors are pretrained with the network: the initializer and the fine-tuning strategies act on the rest
only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from trainspeed.errors import ConfigError, DataError
from trainspeed.model.hub_cache import hub_file
from trainspeed.record.atomic import replacing
from trainspeed.record.checkpoint_file import zip_damage

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass(frozen=True)
class LoadedWeights:
    """What was loaded into a network (returned with it by build_network)."""

    source: str  # the file the tensors came from
    loaded: frozenset[str]  # state-dict names (parameters and buffers) that hold pretrained values
    new: tuple[str, ...]  # parameter names that start from initialization: the head, any layer the file lacks
    unused: tuple[str, ...]  # tensors of the file that the network has no place for
    missing: tuple[str, ...]  # backbone tensors of the network that the file does not hold


def model_config(cfg: DictConfig) -> DictConfig:
    """cfg.model, without its weights when `finetune=scratch` asks for the from-scratch baseline."""
    finetune, model = cfg.get("finetune"), cfg.model
    scratch = finetune is not None and finetune.get("name") == "scratch"
    if not scratch or not (model.get("weights") or model.get("pretrained")):
        return model
    log.info("finetune=scratch: model.weights / model.pretrained are not loaded (the from-scratch baseline)")
    return OmegaConf.create(
        {**OmegaConf.to_container(model, resolve=True), "weights": None, "pretrained": False}
    )


def weights_file(cfg: DictConfig) -> tuple[str, Path] | None:
    """(config key, local file) of the weights the model config asks for, or None for a model from scratch."""
    if cfg.get("weights"):
        path = Path(str(cfg.weights)).expanduser()
        if path.suffix not in WEIGHT_SUFFIXES:
            raise ConfigError("model.weights", cfg.weights, "a " + ", ".join(WEIGHT_SUFFIXES) + " file")
        if not path.is_file():
            raise DataError(
                f"model.weights={cfg.weights!r}: no such file (expected a {'/'.join(WEIGHT_SUFFIXES)} file)"
            )
        return "model.weights", path
    if cfg.get("pretrained", False):
        return "model.pretrained", hub_file(cfg.name)
    return None


def read_state(key: str, path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name, read by timm's own reader (safetensors, or torch.load with weights_only)."""
    from timm.models import load_state_dict

    damage = zip_damage(path)  # torch.load would read the damaged values without complaint
    if damage is not None:
        raise DataError(f"{key}={str(path)!r}: the weights file is {damage}; save or copy it again")
    try:
        state = load_state_dict(str(path))
    except Exception as err:
        reason = (str(err).splitlines() or [""])[0][:200]
        raise DataError(
            f"{key}={str(path)!r}: cannot read the weights file ({type(err).__name__}: {reason}); expected a timm "
            "state dict saved with safetensors (.safetensors) or torch.save (.pth/.bin)"
        ) from err
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)] if isinstance(state, dict) else []
    if not isinstance(state, dict) or not state or bad:
        not_tensors = f" (not tensors: {_names(map(str, bad), 3)})" if bad else ""
        raise DataError(f"{key}={str(path)!r}: the file holds no state dict of tensors{not_tensors}")
    return state


def _names(names: Iterable[str], limit: int = 8) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _as_tuple(value) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def create_with_weights(
    name: str, key: str, path: Path, num_classes: int, in_chans: int, layers_changed: bool, **kwargs
) -> tuple[nn.Module, LoadedWeights]:
    """timm.create_model with the weights in `path`, through timm's pretrained loader; the head is new.
    Returns the model and the record of what was loaded.

    Backbone tensors missing from the file, or file tensors without a place in the model, are an error unless
    the activation / normalization was changed (`layers_changed`): then they are recorded and reported.
    """
    import timm  # ~1 s to import: only for a timm model (an MLP or CNN run never loads it)

    state = read_state(key, path)
    default_cfg = timm.models.get_pretrained_cfg(name)
    default_cfg = default_cfg.to_dict() if default_cfg is not None else {}
    heads = _as_tuple(default_cfg.get("classifier"))
    first_conv = (_as_tuple(default_cfg.get("first_conv")) or ("",))[0]
    # Tell timm what the file holds (its classes and input channels), so that it adapts both to the data
    stem = state.get(f"{first_conv}.weight")
    head = next((state[f"{h}.weight"] for h in heads if f"{h}.weight" in state), None)
    file_chans = int(stem.shape[1]) if stem is not None and stem.ndim == 4 else in_chans
    overlay = {
        "file": str(path),
        "num_classes": int(head.shape[0]) if head is not None else 0,
        "input_size": (file_chans, *(default_cfg.get("input_size") or (3, 224, 224))[1:]),
    }
    try:
        with _quiet_timm_loader():  # it logs every adapted key; the summary below says what matters
            model = timm.create_model(
                name,
                pretrained=True,
                pretrained_cfg_overlay=overlay,
                pretrained_strict=False,  # compared below, with a message that names the file
                num_classes=num_classes,
                in_chans=in_chans,
                **kwargs,
            )
    except RuntimeError as err:
        text = str(err)
        if "state_dict" not in text and "Pretrained" not in text:
            raise
        lines = [ln.strip() for ln in text.splitlines() if "size mismatch" in ln or "Pretrained" in ln]
        raise DataError(
            f"{key}={str(path)!r} does not fit timm model {name!r} (in_chans={in_chans}): "
            + "; ".join(lines[:4] or [text[:300]])
            + (f"; ... ({len(lines)} mismatches)" if len(lines) > 4 else "")
        ) from err

    def is_head(k: str) -> bool:
        return any(k == h or k.startswith(h + ".") for h in heads)

    model_keys = {k for k in model.state_dict() if not is_head(k)}
    file_keys = {k for k in state if not is_head(k)}
    loaded = frozenset(model_keys & file_keys)
    missing, unused = tuple(sorted(model_keys - file_keys)), tuple(sorted(file_keys - model_keys))
    if not loaded or ((missing or unused) and not layers_changed):
        raise DataError(
            f"{key}={str(path)!r} does not match timm model {name!r}: "
            f"{len(missing)} tensors of the model are not in the file ({_names(missing) or '-'}); "
            f"{len(unused)} tensors of the file have no place in the model ({_names(unused) or '-'})"
        )
    if head is not None and head.shape[0] == num_classes:
        # timm kept the file's head (same class count): the target task still gets a new one
        for h in heads:
            module = model.get_submodule(h)
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    new = tuple(n for n, _ in model.named_parameters() if n not in loaded)
    return model, LoadedWeights(str(path), loaded, new, unused, missing)


@contextmanager
def _quiet_timm_loader():
    logger = logging.getLogger("timm.models")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def modules_to_initialize(network: nn.Module, record: LoadedWeights | None) -> list[nn.Module]:
    """Every module, or with pretrained weights only the modules that own a new parameter (never pretrained ones)."""
    if record is None:
        return list(network.modules())
    new = set(record.new)
    return [
        module
        for prefix, module in network.named_modules()
        if any((f"{prefix}.{p}" if prefix else p) in new for p, _ in module.named_parameters(recurse=False))
    ]


def report_loaded(record: LoadedWeights | None, activation: str, normalization: str) -> None:
    """Log what was loaded; warn once when the backbone's activation or normalization was changed."""
    if record is None:
        return
    log.info("loaded %d tensors from %s; new: %s", len(record.loaded), record.source, _names(record.new))
    changed = [f"{k}={v}" for k, v in (("activation", activation), ("normalization", normalization))]
    changed = [c for c in changed if not c.endswith("=default")]
    if changed:
        log.warning(
            "%s on a pretrained backbone: its weights were trained with the model's own layers, so the "
            "pretrained features are only a starting point. %d pretrained tensors no longer match and are not "
            "used (%s); %d backbone tensors are not in the weights and start from initialization (%s)",
            " and ".join(changed),
            len(record.unused),
            _names(record.unused) or "none",
            len(record.missing),
            _names(record.missing) or "none",
        )


def export_weights(run: str | Path, out: str | Path) -> Path:
    """Save the network of a trainspeed run (its best, else last, checkpoint) as timm-format safetensors."""
    from safetensors.torch import save_file

    run = Path(run)
    candidates = (
        [run] if run.is_file() else [run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"]
    )
    checkpoint = next((c for c in candidates if c.is_file()), None)
    if checkpoint is None:
        raise DataError(f"no checkpoint to export: none of {', '.join(map(str, candidates))} exists")
    damage = zip_damage(checkpoint)
    if damage is not None:
        raise DataError(f"{checkpoint}: the checkpoint is {damage}; nothing was exported")
    # a checkpoint this project wrote (it holds Lightning's loop state, so not weights_only)
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    prefix = "network."
    tensors = {
        k[len(prefix) :].removeprefix("_orig_mod."): v.detach().clone().contiguous()
        for k, v in state.items()
        if k.startswith(prefix)
    }
    out = Path(out)
    with replacing(out) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt", "source": str(checkpoint)})
    return out
