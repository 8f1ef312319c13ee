"""A job's files, below the pipeline: names, guards, lock, staging, writers, report, preview, publish.

    job.JobFiles         the one owner of a job's files: check, lock, clean, write, publish
    names.OutputLayout   every path one job may write, derived from its main output
    guards               outputs are never inputs; one run per output (lock); a killed run's leftovers
    writers              the video / image / extras / report written into staging, then published together
    preview              the live preview, decoded by a callable the caller hands in

Nothing here imports the pipeline; `job` and `names` load no torch.
"""

from .job import JobFiles
from .names import OutputLayout

__all__ = ["JobFiles", "OutputLayout"]
