"""Training and evaluation of the models (mirrors ``mindrec.train``).

The grid (common.ModelBenchmark) crosses the two models with a small dense table and a
1M-row sparse one, because table size decides which optimizer path runs (dense updates
of every row vs lazy updates of the touched rows).
"""
from __future__ import annotations

from .common import PEAKMEM_STEPS, TIMED_STEPS, WARMUP_STEPS, ModelBenchmark, run_config
from .loops import held_batch_loop


class TrainSteps(ModelBenchmark):
    """Time of TIMED_STEPS train steps (batch 1000) on batches already in memory,
    after WARMUP_STEPS steps (the first compiles the graph): the step alone, no input."""

    def setup(self, cache, model, table_size):
        self.check_supported(cache)
        from mindrec.train.trainer import build
        run = run_config(model, table_size, TIMED_STEPS + WARMUP_STEPS)
        self.loop = held_batch_loop(build(run, cache["data"]), run, cache["data"],
                                    TIMED_STEPS, WARMUP_STEPS)

    def time_train_step(self, cache, model, table_size):
        self.loop()


class TrainMemory(ModelBenchmark):
    """Peak resident memory of a process that builds the model and trains
    PEAKMEM_STEPS steps from the MindRecord files (MindSpore import included)."""

    def setup(self, cache, model, table_size):
        self.check_supported(cache)

    def peakmem_train(self, cache, model, table_size):
        from mindrec.train.trainer import build, fit
        run = run_config(model, table_size, PEAKMEM_STEPS)
        fit(build(run, cache["data"]), run, cache["data"], progress=None)


class TrainQuality(ModelBenchmark):
    """What the setup_cache training measured (fixed steps, seed and data): throughput
    and test quality, tracked beside the timings as scikit-learn tracks its scores."""

    def setup(self, cache, model, table_size):
        self.result = self.trained(cache, model, table_size)

    def track_samples_per_s(self, cache, model, table_size):
        return self.result["samples_per_s"]

    track_samples_per_s.unit = "samples/s"

    def track_auc(self, cache, model, table_size):
        return self.result["auc"]

    track_auc.unit = "AUC"

    def track_logloss(self, cache, model, table_size):
        return self.result["logloss"]

    track_logloss.unit = "logloss"


class Evaluate(ModelBenchmark):
    """mindrec.train.trainer.evaluate over the test split (about 6k rows), as a user
    calls it: reading, prediction (its graph compile included: evaluate builds a new
    Predict cell per call) and AUC/logloss. The weights do not change the cost, so the
    model is freshly initialised rather than loaded."""

    repeat = 3

    def setup(self, cache, model, table_size):
        self.check_supported(cache)
        from mindrec.train.trainer import build, evaluate

        run = run_config(model, table_size, TIMED_STEPS)
        self.network = build(run, cache["data"])
        self.table_rows = run.train.table_size
        self.evaluate = evaluate
        evaluate(self.network, cache["data"], table_size=self.table_rows)  # warm-up

    def time_eval(self, cache, model, table_size):
        self.evaluate(self.network, cache["data"], table_size=self.table_rows)
