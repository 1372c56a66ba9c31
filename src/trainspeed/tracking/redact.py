"""Keep credentials from the environment out of everything trainspeed writes or uploads."""

from __future__ import annotations

import os
import re
from typing import Any

MASK = "***"
# environment variables whose values are credentials (WANDB_API_KEY, HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...)
_SECRET_NAME = re.compile(r"API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY", re.IGNORECASE)
_MIN_LENGTH = 8  # shorter values ("1", "true") are flags, and masking them would mangle ordinary text


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The values of credential-like environment variables, longest first."""
    environ = os.environ if environ is None else environ
    values = {v for k, v in environ.items() if _SECRET_NAME.search(k) and len(v) >= _MIN_LENGTH}
    return sorted(values, key=len, reverse=True)


def scrub(value: Any, secrets: list[str] | None = None) -> Any:
    """`value` (nested dicts, lists and strings) with every secret replaced by "***"."""
    secrets = secret_values() if secrets is None else secrets
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v, secrets) for v in value)
    return value
