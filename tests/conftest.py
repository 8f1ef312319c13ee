"""Shared test setup: offline, deterministic, fixtures located beside the repository."""

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _fixtures import require_fixture


@pytest.fixture
def fixtures() -> Path:
    """../shared/fixtures (real clip + paintings); see _fixtures.py for when it is absent."""
    return require_fixture("bigbuckbunny.mp4").parent


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks gain nothing from threads, and spin-waiting threads stall when other work shares the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
