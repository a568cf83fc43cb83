"""asv benchmarks of mindrec-bench (see docs/regression-tracking.md).

asv imports this directory as a package named ``benchmarks`` (the directory's name); the
modules import each other relatively (the micro suites import ``bench.benchmarks.loops``).
Importing them does not import MindSpore: each benchmark imports what it needs in
``setup``, so discovery and ``asv check`` stay fast.
"""
