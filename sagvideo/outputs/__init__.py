"""A job's files, below the pipeline: names, guards, lock, staging, writers, report, preview, publish.

    names.OutputLayout   every path one job may write, derived from its main output
    guards               outputs are never inputs; one run per output (lock); a killed run's leftovers
    writers              the video / image / extras written into staging, then published together
"""
