"""pytest-benchmark micro suites (``mindrec-bench microbench``, ``make microbench``; see
docs/regression-tracking.md).

Files are named ``bench_*.py`` so that ``make test`` (``pytest``, testpaths ``tests``) never
collects them; ``conftest.py`` collects them when pytest is pointed at ``bench/micro``.
"""
