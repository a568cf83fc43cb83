"""Shared fixtures: a tiny synthetic dataset, generated and converted once per session."""
from __future__ import annotations

import pytest

from mindrec.data.convert import convert
from mindrec.data.synthetic import SyntheticSpec, generate


@pytest.fixture(scope="session")
def tiny_raw(tmp_path_factory):
    """Directory with a 20,000-row synthetic Criteo file (train.txt) and its truth."""
    out = tmp_path_factory.mktemp("raw")
    generate(SyntheticSpec(rows=20_000, vocab=5_000, seed=3), out, progress=None)
    return out


@pytest.fixture(scope="session")
def tiny_data(tiny_raw, tmp_path_factory):
    """The tiny synthetic dataset converted to MindRecord (90/10 split)."""
    out = tmp_path_factory.mktemp("converted") / "data"
    convert(tiny_raw / "train.txt", out, threshold=1, progress=None)
    return out
