"""Shared test setup: offline, deterministic, fixtures located beside the repository."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


@pytest.fixture
def fixtures() -> Path:
    """../shared/fixtures (real clip + paintings); skips when a fresh clone has none."""
    if not (FIXTURES / "bigbuckbunny.mp4").is_file():
        pytest.skip(f"real fixtures not found at {FIXTURES} (they sit beside the repository, in ../shared/fixtures)")
    return FIXTURES
