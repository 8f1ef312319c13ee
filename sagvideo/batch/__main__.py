"""`python -m sagvideo.batch jobs.yaml -o OUTDIR ...`: the same command as `sagvideo batch`."""

import sys

from ..commandline import console_entry


def _main(argv: list[str]) -> int:
    from .run import main  # imported under the signal policy: an interrupt here ends cleanly too

    return main(argv)


if __name__ == "__main__":
    console_entry(_main, sys.argv[1:])
