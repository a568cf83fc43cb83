"""The data pipeline: Criteo parsing and encoding, MindRecord reading, the generator."""
from __future__ import annotations

import pytest

from bench.micro.settings import BATCH, GENERATOR_ROWS, SEED, VOCAB


def test_criteo_parse(benchmark, small_raw_file, per_second):
    """iter_chunks over a 20k-row raw file: split into tokens, decode ints and hex."""
    from mindrec.data.criteo import iter_chunks

    def parse() -> int:
        return sum(len(chunk) for chunk in iter_chunks(small_raw_file, chunk_rows=100_000))

    rows = benchmark(parse)
    per_second(rows)


def test_criteo_encode(benchmark, parsed_chunk, vocabulary, per_second):
    """encode() of a pre-parsed 100k-row chunk: vocabulary lookups and value scaling."""
    from mindrec.data.criteo import encode

    ids, _, _ = benchmark(encode, parsed_chunk, vocabulary)
    per_second(len(ids))


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_mindrecord_iter_batches(benchmark, dataset, shuffle, per_second):
    """iter_batches over the ~100k-row train split of packed MindRecord, batch 1000."""
    from mindrec.data.dataset import load_meta
    from mindrec.data.mindrecord import iter_batches
    path = dataset / load_meta(dataset)["files"]["train"]

    def read() -> int:
        return sum(len(labels) for _, _, labels in
                   iter_batches(path, BATCH, shuffle=shuffle, seed=SEED))

    rows = benchmark(read)
    per_second(rows)


def test_synthetic_generate(benchmark, tmp_path, per_second):
    """The synthetic generator writing 50k rows (click model set-up included)."""
    from mindrec.data.synthetic import SyntheticSpec, generate
    spec = SyntheticSpec(rows=GENERATOR_ROWS, vocab=VOCAB, seed=SEED)

    benchmark.pedantic(generate, args=(spec, tmp_path), kwargs={"progress": None},
                       rounds=5, iterations=1)
    per_second(GENERATOR_ROWS)
