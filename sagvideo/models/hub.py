"""Load pretrained components by hub id or local folder, failing fast and clearly when offline.

`huggingface_hub` retries for ~30 s and then raises an error that does not say which model
was missing. `load_pretrained` decides up front whether the hub can be used at all (the
`HF_HUB_OFFLINE` variable, or a 3-second connection probe of the configured endpoint) and
turns any failure into a `ModelUnavailableError` naming the model and how to supply it.
"""

from __future__ import annotations

import functools
import os
import socket
import warnings
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from ..errors import ModelUnavailableError


def hub_offline() -> bool:
    """True when `HF_HUB_OFFLINE` is set to a true value."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the configured Hugging Face endpoint opens within `timeout_s`."""
    if hub_offline():
        return False
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def how_to_supply(name: str, what: str, config_key: str | None) -> str:
    """The fix, in words, for a missing model."""
    where = f"set `{config_key}: /path/to/folder` in your config, or " if config_key else ""
    return (
        f"{what} '{name}' is not a local folder and is not in the Hugging Face cache, "
        f"and the hub cannot be reached"
        + (" (HF_HUB_OFFLINE is set)" if hub_offline() else "")
        + f". To fix: {where}download it where the hub is reachable "
        f"(`hf download {name}`, the command of current huggingface_hub) and copy the cache folder "
        f"(~/.cache/huggingface/hub, or $HF_HOME) to this machine, "
        f"or use `--config tiny` for an offline smoke run with random weights."
    )


def load_pretrained(
    loader: Callable[..., Any],
    name: str,
    *,
    what: str,
    config_key: str | None = None,
    **kwargs: Any,
) -> Any:
    """Call `loader(name, **kwargs)` (a `from_pretrained`), offline-first.

    A local folder is loaded as it is. A hub id is loaded with `local_files_only=True`
    when the hub is unreachable, so a missing model fails in seconds.
    """
    if not Path(name).expanduser().is_dir() and not hub_reachable():
        kwargs["local_files_only"] = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")  # noise from old callers
            return loader(str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name, **kwargs)
    except (OSError, ValueError, EnvironmentError) as exc:
        if kwargs.get("local_files_only"):
            raise ModelUnavailableError(how_to_supply(name, what, config_key)) from exc
        raise ModelUnavailableError(
            f"{what} '{name}' could not be loaded: {exc}. To fix: check the id or folder "
            + (f"(`{config_key}` in your config)" if config_key else "")
            + "."
        ) from exc
