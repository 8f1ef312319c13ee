"""`python -m sagvideo.batch jobs.yaml -o OUTDIR ...` (same flags as `sagvideo batch`)."""

from .run import main

if __name__ == "__main__":
    raise SystemExit(main())
