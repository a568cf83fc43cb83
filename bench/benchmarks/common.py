"""Shared pieces of the asv suite, in the pattern of scikit-learn's ``asv_benchmarks``.

* :class:`Benchmark` holds the asv settings, sized so that ``asv run`` over one commit
  ends in a few minutes on 2 cores, and the one ``setup_cache`` that every benchmark
  class inherits. asv keys a cache by the source location of its ``setup_cache``, so the
  subclasses share it and it runs once per commit: it generates the synthetic dataset,
  converts it, trains and evaluates every (model, table_size) combination once, and
  returns paths and metrics. ``setup`` methods only load what it made.
* :class:`ModelBenchmark` adds the parameter grid ``model x table_size``.

Sizes are fixed constants, not profiles, so that every result in a history measures the
same work. The benchmarks' ``version`` is derived from them: asv keeps comparing results
across commits while it is unchanged. Bump ``SUITE_VERSION`` when the way something is
measured changes without a size changing.

Importing this module does not import MindSpore (discovery and ``asv check`` import
every benchmark module): the mindrec functions that load it are imported inside the
methods that need them (``mindrec.data.criteo``, imported here, needs only numpy).
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
from pathlib import Path

from mindrec.data.criteo import NUM_FIELDS  # no MindSpore behind it

SUITE_VERSION = 1

MODELS = ("wide_deep", "dcn")
# table_size label -> (rows of the embedding tables, sparse mode). "vocab" sizes the tables
# to the converted dataset's vocabulary (about 6.8k ids) with dense gradients; "1M" spreads
# the same ids over a 1M-row table with sparse lookups and lazy optimizers (FACTS.md: the
# path large tables need).
TABLES = {"vocab": (None, "off"), "1M": (1_000_000, "on")}

DATA = {"rows": 60_000, "vocab": 10_000, "seed": 0}  # training data (90/10 split)
CONVERT_INPUT = {"rows": 50_000, "vocab": 10_000, "seed": 1}  # the converter's input
PRESET = "cpu-small"  # emb 16, narrow towers, batch 1000
TRAIN_STEPS = 100  # steps of the setup_cache training of each combination (~2 epochs)
WARMUP_STEPS = 2  # steps run before any timing (the first one compiles the graph)
TIMED_STEPS = 10  # train steps in one time_train_step sample
PEAKMEM_STEPS = 20  # train steps inside peakmem_train
# embedding.HashIndexOps: random int64 keys held by the index, Zipf-skewed queries, and
# one training step's keys (a batch of batch_rows rows, one key per field).
HASH_INDEX = {"keys": 1_000_000, "zipf": 1.1, "seed": 0, "batch_rows": 1000}

SIZES = {"data": DATA, "convert_input": CONVERT_INPUT, "preset": PRESET,
         "tables": {k: list(v) for k, v in TABLES.items()}, "train_steps": TRAIN_STEPS,
         "warmup_steps": WARMUP_STEPS, "timed_steps": TIMED_STEPS,
         "peakmem_steps": PEAKMEM_STEPS, "hash_index": HASH_INDEX, "fields": NUM_FIELDS}
VERSION = f"{SUITE_VERSION}-" + hashlib.sha256(
    json.dumps(SIZES, sort_keys=True).encode()).hexdigest()[:10]

# What the suite calls in mindrec; a commit that lacks any of it is skipped, not failed.
_REQUIRED_MODULES = ("mindrec.config", "mindrec.data.synthetic", "mindrec.data.convert",
                     "mindrec.train.trainer", "mindrec.train.step")
_REQUIRED_TRAIN_FIELDS = ("max_steps", "warmup_steps", "table_size", "sparse")
_REQUIRED_TRAINER_NAMES = ("batches", "build", "fit", "evaluate")


def unsupported_reason() -> str | None:
    """Why the installed mindrec (the commit under test) cannot run this suite, or None.

    Only absent features count: a module that exists but fails to import is a broken
    commit, and its error propagates so the benchmarks fail.
    """
    for name in _REQUIRED_MODULES:
        if importlib.util.find_spec(name) is None:
            return f"{name} does not exist at this commit"
    from mindrec.config import TrainConfig
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in _REQUIRED_TRAIN_FIELDS:
        if name not in fields:
            return f"TrainConfig has no field {name!r} at this commit"
    from mindrec.train import trainer
    for name in _REQUIRED_TRAINER_NAMES:
        if not hasattr(trainer, name):
            return f"mindrec.train.trainer has no {name}() at this commit"
    return None


def run_config(model: str, table_size: str, steps: int):
    """The RunConfig of one grid point, stopping after ``steps`` train steps."""
    from mindrec.config import build_run_config
    rows, sparse = TABLES[table_size]
    return build_run_config(model, PRESET, train_overrides={
        "epochs": 1000, "max_steps": steps, "warmup_steps": WARMUP_STEPS,
        "table_size": rows, "sparse": sparse})


def combination(model: str, table_size: str) -> str:
    """Key of a grid point in the cache's ``models`` mapping."""
    return f"{model}/{table_size}"


class Benchmark:
    """asv settings and the suite's one ``setup_cache``.

    Timing: one call per sample (``number = 1``), a few samples, one round (each round
    costs a process start and a MindSpore import), no warm-up time (setup runs the
    warm-up steps explicitly).
    """

    timeout = 300
    number = 1
    repeat = 5
    rounds = 1
    warmup_time = 0
    min_run_count = 1
    version = VERSION

    def setup_cache(self):
        """Make the data and train every grid point once; runs in asv's cache directory.

        Returns a dict: ``unsupported`` (None or why this commit cannot run the suite),
        ``data`` (converted dataset), ``bayes_auc`` (AUC of the true click probabilities
        on its test split), ``convert_input`` (raw file for time_convert) and
        ``models``: per grid point its samples/s (median step after the warm-up), test
        AUC and logloss.
        """
        reason = unsupported_reason()
        if reason is not None:
            return {"unsupported": reason}
        from mindrec.data.convert import convert
        from mindrec.data.synthetic import SyntheticSpec, generate
        from mindrec.train.trainer import build, evaluate, fit

        work = Path.cwd().resolve()  # asv removes it once every user has run
        generate(SyntheticSpec(**DATA), work / "raw", progress=None)
        data = work / "data"
        meta = convert(work / "raw" / "train.txt", data, progress=None)
        generate(SyntheticSpec(**CONVERT_INPUT), work / "convert-input", progress=None)

        models = {}
        for model in MODELS:
            for table_size in TABLES:
                run = run_config(model, table_size, TRAIN_STEPS)
                network = build(run, data)
                result = fit(network, run, data, progress=None)
                quality = evaluate(network, data, table_size=run.train.table_size)
                models[combination(model, table_size)] = {
                    "steps": result.steps,
                    "samples_per_s": result.samples_per_s,
                    "auc": quality.auc, "logloss": quality.logloss}
        return {"unsupported": None, "data": str(data), "bayes_auc": meta.get("bayes_auc"),
                "convert_input": str(work / "convert-input" / "train.txt"), "models": models}

    setup_cache.timeout = 900

    @staticmethod
    def check_supported(cache: dict) -> None:
        """Skip (NotImplementedError) when this commit cannot run the suite."""
        if cache["unsupported"] is not None:
            raise NotImplementedError(cache["unsupported"])


class ModelBenchmark(Benchmark):
    """Benchmarks over the grid model x table_size (4 points: keep it small, every point
    of every benchmark is a process that imports MindSpore and compiles a graph)."""

    param_names = ["model", "table_size"]
    params = [list(MODELS), list(TABLES)]

    def trained(self, cache: dict, model: str, table_size: str) -> dict:
        """What setup_cache measured for this grid point."""
        self.check_supported(cache)
        return cache["models"][combination(model, table_size)]
