"""Measurement helpers: peak memory sampling, the machine's other load, and a
description of the environment."""
from __future__ import annotations

import os
import platform
import subprocess
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import psutil


class PeakMemorySampler:
    """Samples memory in a background thread: the resident set of a process and all its
    children, and optionally device memory through ``device_probe`` (MB used now).

    Use as a context manager; ``peak_rss_mb`` and ``peak_device_mb`` (None without a
    probe) hold the largest values seen. Listing the children scans every process on
    the machine (~2 ms), so the list is refreshed every ``children_every_s`` only; a
    sample of the known processes costs ~0.05 ms each.

    Example::

        >>> import numpy as np
        >>> with PeakMemorySampler(interval_s=0.01) as sampler:
        ...     before = sampler.peak_anon_mb
        ...     block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        ...     _ = sampler.sample()
        >>> sampler.peak_anon_mb - before > 60
        True
    """

    def __init__(self, pid: int | None = None, interval_s: float = 0.05,
                 device_probe: Callable[[], float] | None = None,
                 children_every_s: float = 1.0):
        self.process = psutil.Process(pid or os.getpid())
        self.children_every_s = children_every_s
        self._children: list[psutil.Process] = []
        self._children_at = float("-inf")
        self.interval_s = interval_s
        self.device_probe = device_probe
        self.peak_rss_bytes = 0
        # RSS minus resident file pages (Linux): what the process allocated itself. RSS
        # also counts mapped library pages, which depend on the page cache (a freshly
        # installed MindSpore maps ~110 MB more), so gates compare this instead.
        self.peak_anon_bytes = 0
        self.peak_device_mb = None if device_probe is None else 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-memory", daemon=True)

    @property
    def peak_rss_mb(self) -> float:
        return self.peak_rss_bytes / 2**20

    @property
    def peak_anon_mb(self) -> float:
        return self.peak_anon_bytes / 2**20

    def sample(self) -> int:
        """Take one sample now; returns the process tree's RSS in bytes."""
        now = time.monotonic()
        if now - self._children_at >= self.children_every_s:
            self._children = self.process.children(recursive=True)
            self._children_at = now
        total = anon = 0
        for proc in [self.process, *self._children]:
            try:
                info = proc.memory_info()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += info.rss
            anon += info.rss - getattr(info, "shared", 0)
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)
        self.peak_anon_bytes = max(self.peak_anon_bytes, anon)
        if self.device_probe is not None:
            self.peak_device_mb = max(self.peak_device_mb, self.device_probe())
        self.samples += 1
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except psutil.NoSuchProcess:
                return

    def __enter__(self) -> "PeakMemorySampler":
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.sample()
        except psutil.NoSuchProcess:
            pass


class OtherLoad:
    """How busy the machine was, over a block of code, with work other than a process
    tree's own: a cell measured beside other work ran on a loaded machine.

    ``other_cpu_s`` is the machine's busy CPU time (``psutil.cpu_times()``: everything
    but idle and I/O wait; time stolen by a hypervisor counts) less the CPU time of the
    process ``pid`` and its descendants (those reaped inside the tree included);
    ``other_cpu_fraction`` divides it by wall time x logical CPUs (0 = quiet, 1 = every
    CPU busy with other work; clock ticks make it a few hundredths noisy). ``load_avg_1m``
    is the load average when the block starts. Descendants that leave the tree (orphaned
    before exiting) count as other work.

    Example::

        >>> with OtherLoad() as load:
        ...     _ = sum(range(10**6))  # the work measured
        >>> 0.0 <= load.other_cpu_fraction and load.load_avg_1m >= 0.0
        True
    """

    def __init__(self, pid: int | None = None):
        self.process = psutil.Process(pid or os.getpid())
        self.load_avg_1m: float | None = None
        self.other_cpu_s: float | None = None
        self.other_cpu_fraction: float | None = None
        self.wall_s: float | None = None

    def __enter__(self) -> "OtherLoad":
        self.load_avg_1m = os.getloadavg()[0]
        self._start = (time.monotonic(), _machine_busy_s(), self._tree_cpu_s())
        return self

    def __exit__(self, *exc) -> None:
        wall, busy, tree = time.monotonic(), _machine_busy_s(), self._tree_cpu_s()
        self.wall_s = wall - self._start[0]
        self.other_cpu_s = (busy - self._start[1]) - (tree - self._start[2])
        capacity_s = self.wall_s * psutil.cpu_count()
        self.other_cpu_fraction = max(0.0, self.other_cpu_s / capacity_s)

    def _tree_cpu_s(self) -> float:
        """CPU time of the tree: each live process's own, and its reaped children's."""
        total = 0.0
        for proc in [self.process, *self.process.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += times.user + times.system + times.children_user + times.children_system
        return total


def _machine_busy_s() -> float:
    """Busy CPU seconds of the machine since boot, summed over its CPUs."""
    times = psutil.cpu_times()
    # Guest time is already inside user and nice on Linux.
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return sum(times) - times.idle - getattr(times, "iowait", 0.0) - guest


def nvml_used_mb_probe(index: int = 0) -> Callable[[], float]:
    """A probe returning the used memory (MB) of GPU ``index``; needs NVML and a GPU."""
    import pynvml
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    return lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    """The CPU's marketing name (from /proc/cpuinfo on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpus() -> tuple[list[dict], str | None]:
    """NVIDIA GPUs seen through NVML, and the reason when none can be listed."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound and friends on CPU machines
        return [], f"NVML unavailable: {exc.__class__.__name__}: {exc}"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        found = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            found.append({"name": pynvml.nvmlDeviceGetName(handle),
                          "memory_mb": pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20,
                          "driver": driver})
        return found, None if found else "NVML found no GPU"
    finally:
        pynvml.nvmlShutdown()


def environment() -> dict:
    """The ``env`` block of a result record."""
    found, _ = gpus()
    return {
        "python": platform.python_version(),
        "mindspore": _version("mindspore"),
        "numpy": _version("numpy"),
        "torch": _version("torch"),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "accelerator": "gpu" if found else "none",
        "gpus": found,
    }


def git_state(path: str | Path = ".") -> dict:
    """Commit and dirty flag of the git checkout holding ``path`` (None outside git)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(path), *args], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}
