"""Networks loaded once per model config and kept between runs (the page's `Runtime`s).

A `Runtime` loads its networks on first use; the cache hands the same one back for the same
model settings, so a second run with the same config loads nothing. One model config is kept
per device: asking for another one drops the old runtime first, since two Stable Diffusion
pipelines on one GPU would not fit the smaller cards the shipped configs target.
"""

from __future__ import annotations

import gc
import json
import threading
from typing import Any

from ..config import Config


def model_key(config: Config, video: bool) -> str:
    """What decides the networks: every `model.*` setting, and whether the motion module is needed."""
    return json.dumps({"model": config.model.__dict__, "video": video}, sort_keys=True, default=str)


class RuntimeCache:
    """`get(config, video)` -> a `Runtime`, made once per model key and device; `loads` counts makes."""

    def __init__(self) -> None:
        self._by_device: dict[str, tuple[str, Any]] = {}
        self._lock = threading.Lock()
        self.loads = 0

    def get(self, config: Config, video: bool) -> Any:
        from ..pipeline.runtime import Runtime

        key, device = model_key(config, video), str(config.model.device)
        with self._lock:
            held = self._by_device.get(device)
            if held is not None and held[0] == key:
                return held[1]
            if held is not None:  # another model config on this device: free it before loading
                del self._by_device[device]
                held = None
                _release_memory()
            runtime = Runtime.from_config(config, video=video)
            self._by_device[device] = (key, runtime)
            self.loads += 1
            return runtime


def _release_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
