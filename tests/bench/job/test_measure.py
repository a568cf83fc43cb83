import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from bench.job.measure import OtherLoad, PeakMemorySampler


def test_sampler_sees_an_allocation_as_anonymous_memory():
    with PeakMemorySampler(interval_s=0.01) as sampler:
        before = sampler.peak_anon_mb
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        sampler.sample()
        del block
    assert sampler.peak_anon_mb - before > 150
    assert sampler.peak_rss_mb >= sampler.peak_anon_mb


def test_other_load_counts_a_busy_process_outside_the_tree_only():
    """Two views of the same block: from this process, whose tree holds a busy child,
    and from an idle child's tree, which does not. Both see the same background; the
    outside view also counts this process and the busy child as other load."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        child = psutil.Process(busy.pid)

        def cpu_s():  # of this process and the busy child
            return sum(sum(p.cpu_times()[:2]) for p in (psutil.Process(), child))

        with OtherLoad() as inside, OtherLoad(idle.pid) as outside:
            before = cpu_s()
            # A liveness bound only: the block lasts until they have used 0.5 CPU s.
            deadline = time.monotonic() + 120
            while cpu_s() - before < 0.5 and time.monotonic() < deadline:
                time.sleep(0.05)
            used = cpu_s() - before
        assert used >= 0.5, "the busy child never ran"
        # Clock ticks (10 ms per CPU) blur each figure by a few hundredths of a second.
        assert outside.other_cpu_s - inside.other_cpu_s == pytest.approx(used, abs=0.1)
        assert outside.other_cpu_fraction > inside.other_cpu_fraction
        assert inside.load_avg_1m >= 0 and outside.wall_s > 0
    finally:
        busy.kill()
        idle.kill()
        busy.wait()
        idle.wait()
