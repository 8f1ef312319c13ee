"""Child entry point of the benchmarks: `python -m sagvideo.bench KIND JSON` -> one JSON row on stdout."""

import importlib
import json
import sys

# child kind -> (module, measuring function)
CHILDREN = {
    "guidance": ("sagvideo.bench.guidance", "measure_guidance"),
    "pipeline": ("sagvideo.bench.pipeline", "measure_pipeline"),
    "decode": ("sagvideo.bench.decode", "measure_decode"),
    "methods": ("sagvideo.bench.methods", "measure_method"),
    "memory": ("sagvideo.bench.memory_parts", "measure_memory"),
}

if __name__ == "__main__":
    kind, params = sys.argv[1], json.loads(sys.argv[2])
    if kind not in CHILDREN:
        raise SystemExit(f"unknown benchmark child {kind!r}; known: {', '.join(CHILDREN)}")
    module, name = CHILDREN[kind]
    row = getattr(importlib.import_module(module), name)(**params)
    if row is not None:  # None: a rank other than 0 of a multi-process measurement
        print(json.dumps(row))
