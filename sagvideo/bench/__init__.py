"""`sagvideo bench ...`: measurements, one process per measurement.

Ratios between rows of one run are what to compare; absolute seconds depend on the machine.
The argument parser (`bench.cli`) imports no torch, so `sagvideo --help` stays light.
"""
