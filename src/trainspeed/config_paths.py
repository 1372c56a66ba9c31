"""Where the Hydra config lives, whatever the working directory."""

from __future__ import annotations

from pathlib import Path

CONFIG_NAME = "train"


def config_dir() -> str:
    """The `conf/` folder: inside the installed package (wheels ship it as trainspeed/conf) or, in a source
    checkout and editable installs, at the top of the repository."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parents[1] / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"trainspeed's config folder was not found next to {here}")


def extra_kwargs(cfg, key: str = "kwargs") -> dict:
    """A config's free-form `kwargs` mapping as a plain dict (empty when absent or null)."""
    from omegaconf import OmegaConf

    value = cfg.get(key)
    return dict(OmegaConf.to_container(value, resolve=True)) if value else {}


if __name__ == "__main__":
    print(config_dir())
