"""`mindrec-bench microbench`: run the micro suites (``bench/micro``), save the run and
gate it against the previous runs.

1. ``pytest bench/micro --benchmark-autosave`` saves every run under ``STORAGE/<machine
   id>/`` (pytest-benchmark's id, e.g. ``Linux-CPython-3.11-64bit``), with
   ``--benchmark-compare`` against the latest saved run when there is one, for the
   side-by-side table.
2. The first run on a machine has nothing to compare with: it passes and is the baseline.
3. Otherwise each benchmark's median is compared with its baseline: the median of its
   medians over the last ``window`` saved runs (one run measured in a quiet or a busy
   moment does not become the whole baseline). A benchmark regressed when its median is
   more than ``threshold`` percent above that.
4. Regressed benchmarks are run again at once, and the command fails only when they are
   still beyond the threshold: a burst of load from another job does not fail the gate;
   a real slowdown persists. (Measured noise and the reason for the default threshold:
   docs/regression-tracking.md.)
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # pytest runs here (pyproject.toml's settings)
SUITE = Path(__file__).resolve().parent / "micro"
DEFAULT_STORAGE = Path("results/micro")
# Back-to-back runs on a 2-core machine shared with other jobs drifted by up to 57%
# (compute kernels) and 2x (MindRecord reading, a contention burst); against a 3-run
# median with a confirming re-run, 40-60% raised no false alarm there. Use 15-25% on a
# quiet, dedicated machine.
DEFAULT_THRESHOLD = 50.0
DEFAULT_WINDOW = 3
_COLUMNS = "--benchmark-columns=min,median,max,rounds"


def machine_id() -> str:
    """pytest-benchmark's name for this machine's folder in the storage."""
    from pytest_benchmark.utils import get_machine_id
    return get_machine_id()


def saved_runs(storage: Path) -> list[Path]:
    """This machine's saved runs, oldest first (the names start with a counter)."""
    folder = storage / machine_id()
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def medians(path: Path) -> dict[str, tuple[str, float]]:
    """Benchmark name -> (pytest node id, median seconds) of one saved JSON file."""
    data = json.loads(Path(path).read_text())
    return {b["name"]: (b["fullname"], b["stats"]["median"]) for b in data["benchmarks"]}


def baseline(runs: list[Path]) -> dict[str, float]:
    """Per benchmark, the median of its medians over ``runs`` (saved JSON files)."""
    values: dict[str, list[float]] = {}
    for run in runs:
        for name, (_, median) in medians(run).items():
            values.setdefault(name, []).append(median)
    return {name: statistics.median(v) for name, v in values.items()}


def regressions(current: dict[str, tuple[str, float]], base: dict[str, float],
                threshold: float) -> dict[str, float]:
    """Name -> percent slower than the baseline, for those beyond ``threshold`` percent.
    Benchmarks without a baseline are new, never regressed.

    Example::

        >>> now = {"parse": ("b.py::parse", 0.30), "encode": ("b.py::encode", 0.11),
        ...        "new": ("b.py::new", 9.0)}
        >>> slower = regressions(now, {"parse": 0.20, "encode": 0.10}, threshold=25.0)
        >>> {name: round(percent) for name, percent in slower.items()}
        {'parse': 50}
    """
    changes = {name: (median / base[name] - 1.0) * 100.0
               for name, (_, median) in current.items() if name in base}
    return {name: change for name, change in changes.items() if change > threshold}


def _pytest(args: list[str]) -> int:
    return subprocess.call([sys.executable, "-m", "pytest", *args], cwd=ROOT)


def _report(current: dict[str, tuple[str, float]], base: dict[str, float],
            threshold: float) -> None:
    print(f"\nmicrobench: medians against the baseline (fail above +{threshold:g}%):")
    for name in sorted(current):
        median = current[name][1]
        if name not in base:
            print(f"  {name:44s} {median * 1e3:10.2f} ms   (new: no baseline)")
            continue
        change = (median / base[name] - 1.0) * 100.0
        flag = "  REGRESSED" if change > threshold else ""
        print(f"  {name:44s} {median * 1e3:10.2f} ms   baseline {base[name] * 1e3:10.2f} ms"
              f"   {change:+6.1f}%{flag}")


def run_microbench(threshold: float = DEFAULT_THRESHOLD, window: int = DEFAULT_WINDOW,
                   storage: Path = DEFAULT_STORAGE, pytest_args: list[str] = ()) -> int:
    """Run, save and gate the micro suites (module notes); ``pytest_args`` go to pytest.

    Returns the exit status: 0 passed; 1 a confirmed median regression; 2 the run was
    not saved; otherwise pytest's status when a test failed.
    """
    if threshold <= 0:
        raise ValueError(f"--threshold must be positive, got {threshold:g}")
    if window < 1:
        raise ValueError(f"--window must be at least 1, got {window}")
    storage = Path(storage).resolve()
    previous = saved_runs(storage)
    command = [str(SUITE), "--benchmark-autosave", f"--benchmark-storage=file://{storage}",
               _COLUMNS]
    if previous:
        command.append("--benchmark-compare")  # side by side with the latest run
        print(f"microbench: baseline = median of the last {min(window, len(previous))} "
              f"saved run(s) in {storage / machine_id()}", flush=True)
    else:
        print(f"microbench: no saved run for machine {machine_id()} in {storage}: nothing "
              f"to compare with; this run becomes the baseline", flush=True)

    status = _pytest(command + list(pytest_args))
    if status != 0:
        print(f"microbench: FAILED: pytest exit status {status} (a benchmark test failed)")
        return status
    new = [p for p in saved_runs(storage) if p not in previous]
    if len(new) != 1:
        print(f"microbench: FAILED: expected one new saved run in {storage}, found {len(new)}")
        return 2
    saved = new[0].relative_to(storage)
    if not previous:
        print(f"microbench: passed (no baseline yet); saved {saved}")
        return 0

    base = baseline(previous[-window:])
    current = medians(new[0])
    _report(current, base, threshold)
    regressed = regressions(current, base, threshold)
    if not regressed:
        print(f"microbench: passed, no median more than {threshold:g}% above its "
              f"baseline; saved {saved}")
        return 0

    print(f"\nmicrobench: {len(regressed)} median(s) beyond +{threshold:g}%; running "
          f"them again to tell a real slowdown from a burst of load", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        again_json = Path(tmp) / "again.json"
        node_ids = [current[name][0] for name in sorted(regressed)]
        status = _pytest([*node_ids, f"--benchmark-json={again_json}", "-q", _COLUMNS])
        if status != 0:
            print(f"microbench: FAILED: the re-run exited with status {status}")
            return status
        again = medians(again_json)
    confirmed = regressions(again, base, threshold)
    for name, change in sorted(regressed.items()):
        verdict = (f"confirmed at {confirmed[name]:+.1f}%" if name in confirmed
                   else f"not confirmed ({(again[name][1] / base[name] - 1) * 100:+.1f}% "
                        f"on the re-run)")
        print(f"  {name:44s} {change:+6.1f}%, {verdict}")
    if confirmed:
        print(f"microbench: FAILED: {len(confirmed)} median regression(s) beyond "
              f"{threshold:g}%; saved {saved}")
        return 1
    print(f"microbench: passed (the slowdowns did not persist); saved {saved}")
    return 0
