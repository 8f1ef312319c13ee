"""One measurement per child process: `python -m sagvideo.bench KIND JSON` prints one JSON row."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from ..errors import SagVideoError


def run_child(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """Run the measurement `kind` with `params` in a fresh Python process; its last stdout line is the row."""
    proc = subprocess.run([sys.executable, "-m", "sagvideo.bench", kind, json.dumps(params)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SagVideoError(f"benchmark child {kind} {params} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
