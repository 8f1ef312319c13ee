"""The page's fields -> a validated `Config`, torch-free (the same loader and checks as the CLI).

Layering, lowest first: the defaults, the config chosen on the page (a shipped name, or the
server's `--config` file), the server's `--set` pairs, the main knobs, the advanced `key=value`
lines. Knobs left blank keep the config's value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import Config, load_config, parse_set_items, shipped_configs
from ..errors import ConfigError

# knob name on the page -> config key
KNOB_KEYS = {
    "strength": "guidance.strength", "steps": "sampling.steps", "seed": "sampling.seed",
    "method": "guidance.method", "size": "video.size", "frames": "video.frames", "denoise": "sampling.denoise",
}


def config_choices(server_configs: list[str] | None) -> list[str]:
    """The shipped config names (read from the package, so a new one appears by itself), then
    any `--config` the server was started with that is not one of them (a YAML file)."""
    names = sorted(shipped_configs())
    return names + [c for c in server_configs or [] if c not in names]


def default_choice(server_configs: list[str] | None) -> str:
    """The page's first selection: the server's last `--config`, else "video"."""
    return (server_configs or ["video"])[-1]


def parse_advanced(text: str | None) -> dict[str, Any]:
    """`key=value` lines (or space-separated pairs; `#` starts a comment) -> overrides."""
    items = []
    for line in (text or "").splitlines():
        line = line.split("#", 1)[0].strip()
        items += line.split() if line else []
    return parse_set_items(items)


def frames_value(text: Any) -> int | str | None:
    """The frames knob: "all", a whole number, or blank (None: the config's)."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip().lower()
    if text == "all":
        return "all"
    try:
        return int(float(text))
    except ValueError:
        raise ConfigError(f"frames must be 'all' or a number of frames, got {text!r}. To fix: type e.g. 16 or all "
                          f"in the frames field.") from None


@dataclass
class PageSettings:
    """What one run asks for: the config choice, the knobs (None: the config's), the advanced text."""

    choice: str
    knobs: dict[str, Any] = field(default_factory=dict)
    advanced: str = ""

    def config(self, server_sets: dict[str, Any] | None = None) -> Config:
        """Load and validate; a ConfigError names the key (unknown setting, out of range)."""
        knobs = {KNOB_KEYS[k]: (frames_value(v) if k == "frames" else v) for k, v in self.knobs.items()}
        overrides = {**(server_sets or {}), **{k: v for k, v in knobs.items() if v is not None and v != ""},
                     **parse_advanced(self.advanced)}
        overrides["output.overwrite"] = False  # the page never replaces a file (each run gets a fresh name)
        return load_config([self.choice], overrides)


def knob_values(config: Config) -> dict[str, Any]:
    """The knobs as the config sets them (to fill the page when the config choice changes)."""
    values = {}
    for knob, key in KNOB_KEYS.items():
        section, name = key.split(".")
        values[knob] = getattr(getattr(config, section), name)
    values["frames"] = str(values["frames"])
    return values
