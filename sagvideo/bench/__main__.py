"""Child entry point of the benchmarks: `python -m sagvideo.bench KIND JSON` -> one JSON row on stdout."""

import json
import sys

if __name__ == "__main__":
    kind, params = sys.argv[1], json.loads(sys.argv[2])
    if kind == "guidance":
        from .guidance import measure_guidance as measure
    elif kind == "pipeline":
        from .pipeline import measure_pipeline as measure
    else:
        raise SystemExit(f"unknown benchmark child {kind!r}")
    print(json.dumps(measure(**params)))
