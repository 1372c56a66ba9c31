"""Lightning's refusals (MisconfigurationException) in the user's terms: the config settings they are about.

Lightning's messages speak of Trainer arguments and class names (`Trainer(devices=0)`, `CUDAAccelerator`,
`LearningRateMonitor`), never of the config key the user typed. The settings at fault are found by what the message
names: a trainer argument, a callback's or logger's class, an accelerator / strategy / precision class.
No heavy import here: this runs where torch may not be loaded.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig

from trainspeed.errors import lightning_misconfiguration

# class-name families Lightning names in its messages -> the trainer argument that chose them
_CLASS_SUFFIX_TO_TRAINER_KEY = {
    "Accelerator": "accelerator",
    "Strategy": "strategy",
    "Precision": "precision",
}
# phrases without a class or argument name
_PHRASE_TO_TRAINER_KEY = {"gpu backend": "accelerator", "cuda": "accelerator", "nccl": "strategy"}


def _class_name(item: Any) -> str | None:
    target = item.get("_target_") if isinstance(item, DictConfig) else None
    return str(target).rsplit(".", 1)[-1] if target else None


def _group_entries(cfg: DictConfig, group: str) -> dict[str, Any]:
    entries = cfg.get(group)
    return {str(k): v for k, v in entries.items() if v is not None} if entries else {}


def settings_at_fault(message: str, cfg: DictConfig) -> list[str]:
    """The config settings (`key=value`) a Lightning message is about, in the order trainer, callbacks, logger."""
    trainer = cfg.get("trainer") or {}
    # an argument quoted as `key` or written key=value is the one refused; a word in passing only without those
    keys: list[str] = [key for key in trainer if re.search(rf"`{key}`|(?<![\w.]){key}=", message)]
    if not keys:
        keys = [key for key in trainer if re.search(rf"(?<![\w.]){re.escape(str(key))}(?!\w)", message)]
        keys += [
            key
            for suffix, key in _CLASS_SUFFIX_TO_TRAINER_KEY.items()
            if re.search(rf"\w{suffix}\b", message)
        ]
        lowered = message.lower()
        keys += [key for phrase, key in _PHRASE_TO_TRAINER_KEY.items() if phrase in lowered]
    keys = [key for key in keys if key in trainer]
    found = [f"trainer.{key}={trainer.get(key)}" for key in dict.fromkeys(keys)]
    for name, item in _group_entries(cfg, "callbacks").items():
        class_name = _class_name(item)
        if class_name and class_name in message:
            found.append(f"callbacks.{name} ({class_name})")
    if re.search(r"\blogger", message):
        loggers = _group_entries(cfg, "logger")
        found.append("logger=" + (",".join(loggers) if loggers else "none"))
    return found


def refusal_message(err: BaseException, cfg: DictConfig) -> str:
    """One line: the settings Lightning refused and its own reason."""
    refusal = lightning_misconfiguration(err) or err
    reason = " ".join(str(refusal).split())
    # Hydra names the config node it was building when Lightning refused it (full_key: callbacks.<name>)
    built = re.search(r"full_key: (\S+)", str(err)) if refusal is not err else None
    found = [built.group(1)] if built else settings_at_fault(reason, cfg)
    if not found:
        return f"Lightning refused the configuration: {reason}"
    return f"Lightning refused {', '.join(found)}: {reason}"
