"""`python -m sagvideo.batch jobs.yaml -o OUTDIR ...`: the same command as `sagvideo batch`."""

import sys

from ..cli import console_main

if __name__ == "__main__":
    console_main(["batch", *sys.argv[1:]])
