"""The data pipeline (mirrors ``mindrec.data``)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from .common import Benchmark


class ConvertCriteo(Benchmark):
    """Raw Criteo text -> packed MindRecord (both passes, vocabulary, encoding, writing)
    of a fixed synthetic file of 50,000 rows (common.CONVERT_INPUT), made once in
    setup_cache."""

    repeat = 3

    def setup(self, cache):
        self.out = Path.cwd() / f"convert-out-{os.getpid()}"
        self.check_supported(cache)
        from mindrec.data.convert import convert
        self.convert = convert  # imported here: MindSpore's import is not the converter's time

    def teardown(self, cache):
        shutil.rmtree(self.out, ignore_errors=True)

    def time_convert(self, cache):
        self.convert(cache["convert_input"], self.out, overwrite=True, progress=None)


class SyntheticData(Benchmark):
    """The AUC ceiling of the training data: the Bayes-optimal AUC (of the true click
    probabilities) on its test split. A step in train.TrainQuality.track_auc with a step
    here is a change of the generator, not of the models."""

    def setup(self, cache):
        self.check_supported(cache)
        if cache["bayes_auc"] is None:
            raise NotImplementedError("the converter recorded no bayes_auc at this commit")

    def track_bayes_auc(self, cache):
        return cache["bayes_auc"]

    track_bayes_auc.unit = "AUC"
