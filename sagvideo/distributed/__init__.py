"""One clip sampled by several processes (GPUs, machines) through Lightning Fabric.

    sagvideo stylize in.mp4 --style s.png -o out.mp4 --devices 4 [--num-nodes 2] [--accelerator gpu]

Every rank reads the clip and builds the same pipeline; at every network evaluation each rank
predicts its share of the context windows (`guidance.sharded_windows`), the predictions are
gathered and blended on every rank in the one-device order, so the output is the same bytes as
one device for the same seed. Rank 0 writes the outputs. `launch.py` starts the ranks and
turns a failed rank into one message; `pipeline.py` is the sharded pipeline; `collective.py`
the all-gathers.
"""

from .launch import RankFailed, stylize_to_files_distributed

__all__ = ["RankFailed", "stylize_to_files_distributed"]
