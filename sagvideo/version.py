"""The installed package's version, from its metadata (one owner: pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """`sagvideo`'s version as installed; "0+unknown" when run from a tree that was never installed."""
    try:
        return version("sagvideo")
    except PackageNotFoundError:
        return "0+unknown"
