"""Where the real test data lives (../shared/fixtures beside the repository), and what to do without it.

A user's fresh clone has no ../shared: those tests skip with the reason. CI sets
SAGVIDEO_REQUIRE_FIXTURES=1, which turns a missing fixture into a failure, so the end-to-end
tests on real data can never be skipped silently there.
"""

import os
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def require_fixture(name: str = "bigbuckbunny.mp4") -> Path:
    """Path of a fixture file; skips (or, with SAGVIDEO_REQUIRE_FIXTURES=1, fails) when it is absent."""
    path = FIXTURES / name
    if not path.is_file():
        message = f"fixture {path} is absent (real test data sits beside the repository, in ../shared/fixtures)"
        if os.environ.get("SAGVIDEO_REQUIRE_FIXTURES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path
