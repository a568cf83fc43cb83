"""Fixtures of the micro suites: data made once per session from fixed seeds.

``pytest bench/micro`` collects the ``bench_*.py`` files through
:func:`pytest_collect_file`; ``make test`` never reaches this directory.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bench.micro.settings import CHUNK_ROWS, RAW_ROWS, SEED, SMALL_RAW_ROWS, VOCAB

_MEDIANS: dict[str, float] = {}  # medians (s) and ratios shared with the summary


def pytest_collect_file(file_path, parent):
    """Collect ``bench_*.py``; a file named on the command line pytest collects itself."""
    if (file_path.suffix == ".py" and file_path.name.startswith("bench_")
            and not parent.session.isinitpath(file_path)):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


def pytest_terminal_summary(terminalreporter):
    """Print the ratios measured side by side: the peak-memory sampler's overhead and
    the train-step cost of hash tables against static ones."""
    for twin in ("static-sparse", "static-dense"):
        if f"hash/{twin}" in _MEDIANS:
            terminalreporter.write_line(
                f"Wide&Deep train steps, hash / {twin} tables, median of alternating "
                f"rounds: {_MEDIANS[f'hash/{twin}']:.3f}")
    off, on = _MEDIANS.get("sampler-off"), _MEDIANS.get("sampler-on")
    interleaved = _MEDIANS.get("sampler-interleaved")
    if off and on and interleaved:
        terminalreporter.write_line(
            f"PeakMemorySampler overhead on a train-step loop, median with / without: "
            f"{interleaved:.3f} on alternating pairs, {on / off:.3f} between the two "
            f"benchmarks")


@pytest.fixture(scope="session")
def medians() -> dict[str, float]:
    """Medians shared between benchmarks (for ratios printed in the summary)."""
    return _MEDIANS


@pytest.fixture
def per_second(benchmark):
    """``per_second(n, unit)`` stores ``n / median`` as ``extra_info[unit]``; call it after
    the benchmark ran. Does nothing under --benchmark-disable (no statistics)."""

    def record(count: int, unit: str = "rows_per_s") -> None:
        if benchmark.stats is None:
            return
        benchmark.extra_info[unit.replace("_per_s", "")] = count
        benchmark.extra_info[unit] = count / benchmark.stats.stats.median

    return record


def _generate(out: Path, rows: int) -> Path:
    from mindrec.data.synthetic import SyntheticSpec, generate
    generate(SyntheticSpec(rows=rows, vocab=VOCAB, seed=SEED), out, progress=None)
    return out / "train.txt"


@pytest.fixture(scope="session")
def raw_file(tmp_path_factory) -> Path:
    """A synthetic raw Criteo file of RAW_ROWS rows."""
    return _generate(tmp_path_factory.mktemp("raw"), RAW_ROWS)


@pytest.fixture(scope="session")
def small_raw_file(tmp_path_factory) -> Path:
    """A synthetic raw Criteo file of SMALL_RAW_ROWS rows."""
    return _generate(tmp_path_factory.mktemp("small-raw"), SMALL_RAW_ROWS)


@pytest.fixture(scope="session")
def parsed_chunk(raw_file):
    """The first CHUNK_ROWS rows of ``raw_file``, parsed (a RawChunk)."""
    from mindrec.data.criteo import iter_chunks
    return next(iter_chunks(raw_file, chunk_rows=CHUNK_ROWS))


@pytest.fixture(scope="session")
def vocabulary(parsed_chunk):
    """The vocabulary of ``parsed_chunk`` at the default threshold."""
    from mindrec.data.convert import DEFAULT_THRESHOLD
    from mindrec.data.criteo import VocabularyBuilder
    builder = VocabularyBuilder()
    builder.update(parsed_chunk)
    return builder.build(DEFAULT_THRESHOLD)


@pytest.fixture(scope="session")
def dataset(raw_file, tmp_path_factory) -> Path:
    """``raw_file`` converted (train split about 100k rows, test about 11k)."""
    from mindrec.data.convert import convert
    out = tmp_path_factory.mktemp("converted") / "data"
    convert(raw_file, out, progress=None)
    return out


@pytest.fixture(scope="session")
def runtime():
    """MindSpore on CPU in GRAPH mode, seeded (once per session)."""
    from mindrec.train.step import configure_runtime
    configure_runtime(SEED, "CPU")
