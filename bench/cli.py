"""`mindrec-bench <verb>`: the one command line of the harness."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from bench import microbench, stream_cli
from bench.gate import Thresholds
from bench.job.launcher import DistributedJobError
from bench.peers import BACKENDS, DEFAULT_BACKEND, backend_unavailable, check_backend
from bench.results import metric
from bench.run_args import add_run_arguments, run_config_from_args
from bench.services import ServiceError
from mindrec.config import (ConfigError, EmbeddingConfig, EmbeddingKind, ParallelConfig,
                            ParallelMode, SparseMode, TrainConfig)
from mindrec.data.criteo import DEFAULT_THRESHOLD, DENSE_TRANSFORMS
from mindrec.data.download import DATASETS, DownloadError
from mindrec.data.synthetic import SyntheticSpec
from mindrec.stream.kafka import StreamError

# A parallel `train` job is killed after this long unless --timeout says otherwise.
_DEFAULT_JOB_TIMEOUT_S = 3600.0


def _data_synth(args) -> int:
    from mindrec.data.synthetic import generate
    summary = generate(SyntheticSpec(rows=args.rows, vocab=args.vocab, seed=args.seed,
                                     zipf_exponent=args.zipf), args.out, progress=sys.stderr)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _data_convert(args) -> int:
    from mindrec.data.convert import convert
    meta = convert(args.input, args.out,
                   threshold=args.threshold,
                   test_ratio=args.test_ratio, seed=args.seed, on_bad_row=args.on_bad_row,
                   dense_transform=args.dense_transform, overwrite=args.overwrite,
                   progress=sys.stderr)
    rows = meta["rows"]
    print(f"wrote {args.out}: {rows['train']:,} train + {rows['test']:,} test rows, "
          f"{rows['bad']:,} bad rows skipped, vocabulary {meta['vocab_size']:,} ids"
          + (f", Bayes-optimal test AUC {meta['bayes_auc']:.4f}" if "bayes_auc" in meta else "")
          + (f"; {len(meta['warnings'])} warning(s), printed above and kept in meta.json"
             if meta["warnings"] else ""))
    return 0


def _data_download(args) -> int:
    from mindrec.data.download import download_dataset, parse_days
    days = parse_days(args.days) if args.days else None
    paths = download_dataset(args.dataset, args.out, days=days, base_url=args.base_url,
                             progress=sys.stderr, retries=args.retries)
    for path in paths:
        print(f"{path}: {path.stat().st_size:,} bytes")
    print("next: mindrec-bench data convert --input FILE --out DIR (extract the Kaggle "
          ".tar.gz's train.txt first)")
    return 0


def _data_verify(args) -> int:
    from mindrec.data.dataset import verify
    meta = verify(args.dir, full=True)
    print(f"{args.dir / 'meta.json'}: schema {meta['schema']}")
    for name, record in sorted(meta["integrity"].items()):
        print(f"{args.dir / name}: {record['size_bytes']:,} bytes, sha256 {record['sha256']}: "
              "as recorded")
    rows = meta["rows"]
    print(f"rows: {rows['train']:,} train + {rows['test']:,} test, as recorded")
    print(f"{args.dir}: OK")
    return 0


def describe_run(record: dict) -> str:
    """What a `train` run measured, in a few lines."""
    def m(name):
        return metric(record, name)
    bayes = m("bayes_auc")
    gap = f" (Bayes-optimal {bayes:.4f}, gap {bayes - m('auc'):.4f})" if bayes is not None else ""
    spec = record["spec"]
    lines = [f"{spec['model']}/{spec['preset']}: test AUC {m('auc'):.4f}{gap}, logloss "
             f"{m('logloss'):.4f}; {m('samples_per_s'):,.0f} samples/s (median step "
             f"{m('step_ms_p50'):.1f} ms, compile {m('compile_s'):.1f} s); peak RSS "
             f"{m('peak_rss_mb'):,.0f} MiB"]
    if spec.get("peer_variant"):
        lines.append(f"PyTorch twin: {spec['peer_variant']}")
    if spec["workers"] > 1:
        lines.append(f"{spec['mode']} on {spec['workers']} workers: peak RSS per worker "
                     f"{m('peak_rss_mb_per_worker'):,.0f} MiB, tables "
                     f"{m('table_mb_per_worker'):,.1f} MiB per worker; msrun job "
                     f"{m('launch_s'):.0f} s")
    if m("hash_live_rows") is not None:
        lines.append(f"hash table: {m('hash_live_rows'):,} rows live, {m('hash_admitted'):,} "
                     f"admitted, {m('hash_evicted'):,} evicted, {m('hash_candidates'):,} keys "
                     f"seen but not admitted ({m('hash_default_fraction'):.2%} of lookups "
                     f"read the default), index {m('hash_index_mb'):.1f} MiB")
    return "\n".join(lines)


def _train(args) -> int:
    from bench.job.runner import train_and_measure
    from bench.results import write_record
    run, preset = run_config_from_args(args)
    check_backend(run, args.backend)
    if backend_unavailable(args.backend):
        raise ConfigError(f"--backend {args.backend}: {backend_unavailable(args.backend)}")
    if args.backend != DEFAULT_BACKEND and (args.checkpoint or args.resume):
        raise ConfigError("--checkpoint and --resume are for the mindspore backend")
    record = train_and_measure(run, args.data, preset=preset, progress=sys.stderr,
                               backend=args.backend,
                               checkpoint_path=args.checkpoint,
                               resume_from=args.resume,
                               job_dir=args.job_dir,
                               timeout_s=_DEFAULT_JOB_TIMEOUT_S if args.timeout is None
                               else args.timeout)
    print(describe_run(record))
    if args.out:
        write_record(args.out, record)
        print(f"record written to {args.out}")
    return 0


def _sweep(args) -> int:
    from bench.suite import load_suite
    from bench.sweep import run_sweep
    store = run_sweep(load_suite(args.suite), args.results, run_id=args.run_id,
                      resume=args.resume, only=args.only, progress=sys.stderr)
    print(f"records: {store}")
    return 0


def _report(args) -> int:
    from bench.report import write_report
    runs_dir = args.results / "runs"
    run_ids = args.run or [latest_run(runs_dir)]
    paths = [runs_dir / f"{run_id}.jsonl" for run_id in run_ids]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such run")
    md, html = write_report(paths, args.out or args.results)
    print(f"report: {md}\nreport: {html}")
    return 0


def _gate(args) -> int:
    from bench.gate import Thresholds, format_checks, gate
    limits = Thresholds(max_slowdown=args.max_slowdown, max_auc_drop=args.max_auc_drop,
                        max_memory_growth=args.max_memory_growth,
                        max_bayes_gap=args.max_bayes_gap)
    checks, passed = gate(args.baseline, args.results / "runs", args.run, limits)
    print(format_checks(checks))
    failed = sum(c.verdict == "FAIL" for c in checks)
    print(f"gate {'passed' if passed else 'FAILED'}: {len(checks)} checks, {failed} failed "
          f"(run {' + '.join(args.run)} against {args.baseline})")
    return 0 if passed else 1


def _baseline(args) -> int:
    from bench.gate import make_baseline, write_baseline
    baseline = make_baseline(args.results / "runs", args.run)
    write_baseline(args.out, baseline)
    print(f"baseline of {len(baseline['cells'])} cells from run {args.run} written to {args.out}")
    return 0


def _hash_drift(args) -> int:
    from bench.drift import DriftSpec, run_drift
    from bench.results import write_atomic
    spec = DriftSpec(distinct_keys=args.keys, window=args.window, evict=args.evict)
    result = run_drift(spec, progress=sys.stderr)
    print(f"{result['series'][-1]['admitted']:,} keys admitted in {result['steps']} steps "
          f"({result['seconds']:.0f} s): at most {result['live_rows_max']:,} rows live "
          f"(capacity {result['capacity']:,}); peak RSS {result['rss_mb_peak']:,.0f} MB, "
          f"growth over the second half {result['rss_mb_second_half_growth']:+.1f} MB")
    if args.out:
        write_atomic(args.out, json.dumps(result, indent=1))
        print(f"measurements written to {args.out}")
    return 0


def _microbench(args) -> int:
    return microbench.run_microbench(args.threshold, args.window, args.storage, args.pytest_args)


def _field_help(cls, name: str, what: str = "") -> str:
    """Help text with the dataclass's own default (the one source of defaults)."""
    default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
    default = getattr(default, "value", default)
    return f"{what + '; ' if what else ''}default {'null' if default is None else default}"


def latest_run(runs_dir: Path) -> str:
    """Id of the most recently written run in ``runs_dir``."""
    stores = sorted(runs_dir.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    if not stores:
        raise FileNotFoundError(f"{runs_dir}: no runs yet (run `mindrec-bench sweep` first)")
    return stores[-1].stem


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every verb."""
    parser = argparse.ArgumentParser(prog="mindrec-bench", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    data = verbs.add_parser("data", help="make or convert datasets")
    data_verbs = data.add_subparsers(dest="data_verb", required=True)
    synth = data_verbs.add_parser("synth", help="write synthetic Criteo-format data")
    synth.add_argument("--rows", type=int, required=True)
    synth.add_argument("--vocab", type=int, default=SyntheticSpec.vocab,
                       help=f"target categorical cardinality (default {SyntheticSpec.vocab})")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--zipf", type=float, default=SyntheticSpec.zipf_exponent,
                       help="exponent of the per-field Zipf law of ids (default "
                            f"{SyntheticSpec.zipf_exponent})")
    synth.add_argument("--out", type=Path, required=True)
    synth.set_defaults(func=_data_synth)

    down = data_verbs.add_parser(
        "download", help="download Criteo (Kaggle or 1TB): resumable, verified",
        description="Download a public Criteo dataset into --out. Each file is written to "
                    "FILE.part and renamed when whole (and its sha256 matches, where the "
                    "server publishes one); an interrupted download resumes where it "
                    "stopped, when run again too.")
    down.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    down.add_argument("--days", help="criteo-1tb: the days, e.g. 0-3,7 (default: all 24)")
    down.add_argument("--out", type=Path, required=True)
    down.add_argument("--base-url", help="a mirror to download from instead of the "
                                         "dataset's host")
    down.add_argument("--retries", type=int, default=5,
                      help="resume a dropped connection this many times (default 5)")
    down.set_defaults(func=_data_download)

    conv = data_verbs.add_parser("convert", help="convert raw Criteo text to MindRecord")
    conv.add_argument("--input", type=Path, required=True,
                      help="Criteo train.txt / day_N, plain or .gz")
    conv.add_argument("--out", type=Path, required=True)
    conv.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD,
                      help="a category gets its own id when seen more than T times "
                           f"(default {DEFAULT_THRESHOLD}; the original uses 100 for Kaggle, "
                           "6 for 1TB)")
    conv.add_argument("--test-ratio", type=float, default=0.1)
    conv.add_argument("--seed", type=int, default=0)
    conv.add_argument("--on-bad-row", choices=("stop", "skip"), default="stop")
    conv.add_argument("--dense-transform", choices=DENSE_TRANSFORMS, default="max",
                      help="dense value x -> x / max(field) (default, as the original) or "
                           "log(1 + x) for x > 0, else 0")
    conv.add_argument("--overwrite", action="store_true",
                      help="replace --out if it is a dataset made by this tool")
    conv.set_defaults(func=_data_convert)

    check = data_verbs.add_parser("verify", help="check a converted dataset against its "
                                                 "meta.json (sizes, sha256, row counts)")
    check.add_argument("dir", type=Path, help="a converted dataset directory")
    check.set_defaults(func=_data_verify)

    train = verbs.add_parser(
        "train", help="train one model and evaluate it",
        description="Train one model and evaluate it. Settings come from the command line, "
                    "then --config FILE.yaml, then the preset; an option that does not "
                    "apply to the run is an error.")
    train.add_argument("--data", type=Path, required=True, help="a converted dataset dir")
    add_run_arguments(train, "model_config.emb_dim=32")
    preset_default = "default: the preset's"
    train.add_argument("--epochs", type=int, help=preset_default)
    train.add_argument("--batch-size", type=int, help=f"global batch; {preset_default}")
    train.add_argument("--seed", type=int, help=_field_help(TrainConfig, "seed"))
    train.add_argument("--max-steps", type=int, help=_field_help(TrainConfig, "max_steps"))
    train.add_argument("--warmup-steps", type=int,
                       help=_field_help(TrainConfig, "warmup_steps", "steps left out of the "
                                        "timing (the first compiles)"))
    train.add_argument("--table-size", type=int,
                       help=_field_help(TrainConfig, "table_size", "rows of the tables; null: "
                                        "the dataset's vocabulary"))
    train.add_argument("--sparse", choices=[m.value for m in SparseMode],
                       help=_field_help(TrainConfig, "sparse"))
    train.add_argument("--embedding", choices=[k.value for k in EmbeddingKind],
                       help=_field_help(EmbeddingConfig, "kind"))
    train.add_argument("--permit", type=int, help=_field_help(
        EmbeddingConfig, "permit_filter_value", "hash: hits before a key gets a row"))
    train.add_argument("--evict", type=int, help=_field_help(
        EmbeddingConfig, "evict_filter_value", "hash: idle steps before a row goes; null: "
        "never"))
    train.add_argument("--capacity", type=int, help=_field_help(
        EmbeddingConfig, "capacity", "hash: rows; null: the table size"))
    train.add_argument("--mode", choices=[m.value for m in ParallelMode],
                       help=_field_help(ParallelConfig, "mode", "one process, or an msrun "
                                        "job: data_parallel, hybrid (tables sharded "
                                        "by rows)"))
    train.add_argument("--workers", type=int, help=_field_help(
        ParallelConfig, "workers", "msrun workers of a parallel mode (2 or more)"))
    train.add_argument("--job-dir", type=Path,
                       help="parallel modes: keep the workers' logs and outputs here")
    train.add_argument("--timeout", type=float,
                       help=f"parallel modes: kill the job after this many seconds "
                            f"(default {_DEFAULT_JOB_TIMEOUT_S:g})")
    train.add_argument("--checkpoint", type=Path,
                       help="save the trained model and optimizer state (.safetensors) at "
                            "the end, and every --checkpoint-every steps")
    train.add_argument("--checkpoint-every", type=int,
                       help=_field_help(TrainConfig, "checkpoint_every",
                                        "steps between checkpoints to --checkpoint"))
    train.add_argument("--resume", type=Path,
                       help="continue from a checkpoint of this run (its step, parameters, "
                            "optimizer state and, with a cache, its tiers' snapshot)")
    train.add_argument("--redis-url", help="cache: the remote tier's Redis or Redis Cluster "
                                           "(default: start a local server)")
    train.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                       help="mindspore (default), or torch: the model's PyTorch twin on the "
                            "same batches (the peers extra; static tables, one process)")
    train.add_argument("--out", type=Path, help="write the result record (JSON)")
    train.set_defaults(func=_train)

    sweep = verbs.add_parser("sweep", help="run a benchmark suite, one subprocess per cell")
    sweep.add_argument("--suite", default="quick", help="quick|standard|full or a YAML path")
    sweep.add_argument("--run-id", help="default: the current UTC time")
    sweep.add_argument("--resume", action="store_true",
                       help="finish run --run-id, skipping cells already recorded")
    sweep.add_argument("--only", help="run only cells matching KEY=VALUE[,...], KEY an axis or "
                       "a dotted config field, e.g. model=dcn,embedding.kind=hash")
    sweep.add_argument("--results", type=Path, default=Path("results"))
    sweep.set_defaults(func=_sweep)

    report = verbs.add_parser("report", help="write report.md and report.html")
    report.add_argument("--run", action="append",
                        help="run id (repeat to compare two runs); default: the latest")
    report.add_argument("--results", type=Path, default=Path("results"))
    report.add_argument("--out", type=Path, help="output dir (default: --results)")
    report.set_defaults(func=_report)

    gate = verbs.add_parser("gate", help="check a run against a baseline; exit 1 on regression")
    gate.add_argument("--baseline", type=Path, required=True)
    gate.add_argument("--run", required=True, action="append",
                      help="run id of a finished sweep (repeat to pool runs)")
    gate.add_argument("--results", type=Path, default=Path("results"))
    limits = Thresholds()
    gate.add_argument("--max-slowdown", type=float, default=limits.max_slowdown,
                      help="allowed drop of throughput, raw and normalised (fraction, "
                           f"default {limits.max_slowdown})")
    gate.add_argument("--max-auc-drop", type=float, default=limits.max_auc_drop,
                      help=f"allowed AUC drop against the baseline (default "
                           f"{limits.max_auc_drop})")
    gate.add_argument("--max-memory-growth", type=float, default=limits.max_memory_growth,
                      help=f"allowed peak memory growth (fraction, default "
                           f"{limits.max_memory_growth})")
    gate.add_argument("--max-bayes-gap", type=float, default=limits.max_bayes_gap,
                      help="allowed AUC gap to the Bayes optimum of synthetic data (default "
                           f"{limits.max_bayes_gap})")
    gate.set_defaults(func=_gate)

    drift = verbs.add_parser("hash-drift", help="memory of a hash table on a drifting stream")
    drift.add_argument("--keys", type=int, default=2_000_000, help="distinct keys streamed")
    drift.add_argument("--window", type=int, default=100_000, help="live key population")
    drift.add_argument("--evict", type=int, default=20, help="idle steps before eviction")
    drift.add_argument("--out", type=Path, help="write the measurements (JSON)")
    drift.set_defaults(func=_hash_drift)

    micro = verbs.add_parser(
        "microbench", help="run the micro suites; exit 1 on a confirmed median regression",
        description="Run the pytest-benchmark suites of bench/micro, save the run and compare "
                    "each median with the median of the last runs; a regression is run "
                    "again and fails only if it persists. The first run on a machine "
                    "passes and becomes the baseline. Arguments after -- go to pytest.")
    micro.add_argument("--threshold", type=float, default=microbench.DEFAULT_THRESHOLD, metavar="PCT",
                       help=f"fail when a median is more than PCT percent above its "
                            f"baseline (default {microbench.DEFAULT_THRESHOLD:g})")
    micro.add_argument("--window", type=int, default=microbench.DEFAULT_WINDOW, metavar="N",
                       help=f"baseline = median over the last N saved runs "
                            f"(default {microbench.DEFAULT_WINDOW})")
    micro.add_argument("--storage", type=Path, default=microbench.DEFAULT_STORAGE, metavar="DIR",
                       help=f"where runs are saved (default {microbench.DEFAULT_STORAGE})")
    micro.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS",
                       help="passed on to pytest, e.g. -- -k criteo")
    micro.set_defaults(func=_microbench)

    stream_cli.add_verbs(verbs)

    baseline = verbs.add_parser("baseline", help="write a gate baseline from a finished run")
    baseline.add_argument("--run", required=True)
    baseline.add_argument("--out", type=Path, required=True)
    baseline.add_argument("--results", type=Path, default=Path("results"))
    baseline.set_defaults(func=_baseline)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mindrec-bench`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"mindrec-bench: error: {exc}", file=sys.stderr)
        return 2
    except DistributedJobError as exc:
        print(f"mindrec-bench: parallel job failed: {exc}", file=sys.stderr)
        return 1
    except (StreamError, ServiceError, DownloadError) as exc:
        print(f"mindrec-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
