import numpy as np

from bench.job.measure import PeakMemorySampler


def test_sampler_sees_an_allocation_as_anonymous_memory():
    with PeakMemorySampler(interval_s=0.01) as sampler:
        before = sampler.peak_anon_mb
        block = np.ones(200 * 2**20 // 8)  # 200 MiB, touched
        sampler.sample()
        del block
    assert sampler.peak_anon_mb - before > 150
    assert sampler.peak_rss_mb >= sampler.peak_anon_mb
