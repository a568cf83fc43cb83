"""One sweep cell's process tree, and what it measures.

::

    mindrec-bench sweep                  bench/sweep.py: one subprocess per cell
    └── python -m bench.job.cell         cell.py: a record per cell (ok, skipped, failed)
        └── runner.train_and_measure     runner.py: standalone in this process, or
            └── msrun                    launcher.py + parallel.py: an msrun job
                ├── scheduler
                └── bench/job/worker.py  worker.py: one per worker (rank)

Each level is killed by the kernel when its parent dies (:mod:`bench.job.lifetime`), so
a sweep that dies, however it dies, takes its running cell and msrun job along.

Beside them: ``hardware`` (which targets this machine offers), ``limits`` (the machine's
ceilings: sgemm rate, copy bandwidth) and ``measure`` (peak memory, environment, git).
Only the runner and the workers import MindSpore; the sweep and the launcher do not.
"""
