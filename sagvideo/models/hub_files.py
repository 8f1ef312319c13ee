"""One file inside a hub repository as a model reference: `hf://ORG/REPO/PATH/FILE.safetensors`.

Distilled motion modules ship that way (ByteDance/AnimateDiff-Lightning holds one file per step
count; AnimateLCM's LoRA is a file beside its adapter), so `model.motion_adapter`, `model.base`,
`model.controlnet`, `model.vae` and `model.loras` take this form too: the file is fetched into
(or found in) the Hugging Face cache and then read like a local checkpoint file.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError

PREFIX = "hf://"


def is_hub_file(name: str) -> bool:
    """Whether `name` is written as a hub file reference."""
    return isinstance(name, str) and name.startswith(PREFIX)


def split_hub_file(name: str, key: str) -> tuple[str, str]:
    """`hf://org/repo/path/file` -> ("org/repo", "path/file"); ConfigError naming `key` if malformed."""
    parts = name[len(PREFIX):].split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ConfigError(f"config key '{key}' is {name!r}; a hub file is written hf://ORG/REPO/FILE, e.g. "
                          f"hf://ByteDance/AnimateDiff-Lightning/animatediff_lightning_4step_diffusers.safetensors.")
    return f"{parts[0]}/{parts[1]}", parts[2]


def fetch_hub_file(name: str, key: str) -> Path:
    """The local path of hub file `name` (downloaded once, then from the cache; offline: cache only)."""
    repo, filename = split_hub_file(name, key)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as exc:  # offline, missing file, no access: the same fix for the user
        raise ConfigError(f"config key '{key}' names {filename} in the hub repository {repo}, which could not be "
                          f"fetched ({type(exc).__name__}). To fix: connect to the Hugging Face hub once (the file "
                          f"is cached), or download it and give its local path.") from exc
