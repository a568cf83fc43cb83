"""`mindrec-bench <verb>`: the one command line of the harness."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.job.launcher import DistributedJobError
from mindrec.config import PRESETS, ConfigError, EmbeddingKind, ParallelMode, SparseMode


def _data_synth(args) -> int:
    from mindrec.data.synthetic import SyntheticSpec, generate
    summary = generate(SyntheticSpec(rows=args.rows, vocab=args.vocab, seed=args.seed), args.out)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _data_convert(args) -> int:
    from mindrec.data.convert import DEFAULT_THRESHOLD, convert
    meta = convert(args.input, args.out,
                   threshold=DEFAULT_THRESHOLD if args.threshold is None else args.threshold,
                   test_ratio=args.test_ratio, seed=args.seed, on_bad_row=args.on_bad_row,
                   overwrite=args.overwrite)
    rows = meta["rows"]
    print(f"wrote {args.out}: {rows['train']:,} train + {rows['test']:,} test rows, "
          f"{rows['bad']:,} bad rows skipped, vocabulary {meta['vocab_size']:,} ids"
          + (f", Bayes-optimal test AUC {meta['bayes_auc']:.4f}" if "bayes_auc" in meta else ""))
    return 0


def _train(args) -> int:
    from bench.results import write_record
    from bench.job.runner import train_and_measure
    from mindrec.config import build_run_config
    overrides = {k: v for k, v in {"epochs": args.epochs, "batch_size": args.batch_size,
                                   "seed": args.seed, "max_steps": args.max_steps,
                                   "sparse": args.sparse}.items() if v is not None}
    workers = args.workers or (1 if args.mode == "standalone" else 2)
    embedding = {k: v for k, v in {"kind": args.embedding, "permit_filter_value": args.permit,
                                   "evict_filter_value": args.evict,
                                   "capacity": args.capacity}.items() if v is not None}
    run = build_run_config(args.model, args.preset, train_overrides=overrides,
                           embedding=embedding,
                           parallel={"mode": args.mode, "workers": workers})
    record = train_and_measure(run, args.data, checkpoint_path=args.checkpoint,
                               job_dir=args.job_dir, timeout_s=args.timeout)
    m = record["metrics"]
    gap = (f" (Bayes-optimal {m['bayes_auc']:.4f}, gap {m['bayes_auc'] - m['auc']:.4f})"
           if m.get("bayes_auc") is not None else "")
    print(f"{args.model}/{args.preset}: test AUC {m['auc']:.4f}{gap}, logloss "
          f"{m['logloss']:.4f}; {m['samples_per_s']:,.0f} samples/s (median step "
          f"{m['step_ms_p50']:.1f} ms, compile {m['compile_s']:.1f} s); peak RSS "
          f"{m['peak_rss_mb']:,.0f} MB")
    if run.parallel.workers > 1:
        print(f"{run.parallel.mode.value} on {run.parallel.workers} workers: peak RSS per worker "
              f"{m['peak_rss_mb_per_worker']:,.0f} MB, tables {m['table_mb_per_worker']:,.1f} MB "
              f"per worker; msrun job {m['launch_s']:.0f} s")
    if "hash_live_rows" in m:
        print(f"hash table: {m['hash_live_rows']:,} rows live, {m['hash_admitted']:,} admitted, "
              f"{m['hash_evicted']:,} evicted, {m['hash_candidates']:,} keys seen but not "
              f"admitted ({m['hash_default_fraction']:.2%} of lookups read the default), "
              f"index {m['hash_index_mb']:.1f} MB")
    if args.out:
        write_record(args.out, record)
        print(f"record written to {args.out}")
    return 0


def _sweep(args) -> int:
    from bench.suite import load_suite
    from bench.sweep import run_sweep
    store = run_sweep(load_suite(args.suite), args.results, run_id=args.run_id,
                      resume=args.resume, only=args.only)
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
    result = run_drift(spec)
    print(f"{result['series'][-1]['admitted']:,} keys admitted in {result['steps']} steps "
          f"({result['seconds']:.0f} s): at most {result['live_rows_max']:,} rows live "
          f"(capacity {result['capacity']:,}); peak RSS {result['rss_mb_peak']:,.0f} MB, "
          f"growth over the second half {result['rss_mb_second_half_growth']:+.1f} MB")
    if args.out:
        write_atomic(args.out, json.dumps(result, indent=1))
        print(f"measurements written to {args.out}")
    return 0


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
    synth.add_argument("--vocab", type=int, default=200_000,
                       help="target categorical cardinality (default 200000)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", type=Path, required=True)
    synth.set_defaults(func=_data_synth)

    conv = data_verbs.add_parser("convert", help="convert raw Criteo text to MindRecord")
    conv.add_argument("--input", type=Path, required=True,
                      help="Criteo train.txt / day_N, plain or .gz")
    conv.add_argument("--out", type=Path, required=True)
    conv.add_argument("--threshold", type=int, default=None,
                      help="a category gets its own id when seen more than T times "
                           "(default 2; the original uses 100 for Kaggle, 6 for 1TB)")
    conv.add_argument("--test-ratio", type=float, default=0.1)
    conv.add_argument("--seed", type=int, default=0)
    conv.add_argument("--on-bad-row", choices=("stop", "skip"), default="stop")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    conv.set_defaults(func=_data_convert)

    train = verbs.add_parser("train", help="train one model and evaluate it")
    train.add_argument("--model", choices=("wide_deep", "dcn"), required=True)
    train.add_argument("--data", type=Path, required=True, help="a converted dataset dir")
    train.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--max-steps", type=int)
    train.add_argument("--sparse", choices=[m.value for m in SparseMode])
    train.add_argument("--embedding", choices=[k.value for k in EmbeddingKind],
                       help="static tables (default) or dynamic hash tables")
    train.add_argument("--permit", type=int, help="hash: hits before a key gets a row (1)")
    train.add_argument("--evict", type=int, help="hash: idle steps before a row goes (never)")
    train.add_argument("--capacity", type=int, help="hash: rows (default: the vocabulary)")
    train.add_argument("--mode", choices=[m.value for m in ParallelMode], default="standalone",
                       help="standalone, or an msrun job: data_parallel or hybrid "
                            "(tables sharded by rows)")
    train.add_argument("--workers", type=int, default=None,
                       help="workers of a parallel mode (default 2; 1 for standalone)")
    train.add_argument("--job-dir", type=Path,
                       help="parallel modes: keep the workers' logs and outputs here")
    train.add_argument("--timeout", type=float, default=3600.0,
                       help="parallel modes: kill the job after this many seconds")
    train.add_argument("--checkpoint", type=Path, help="save the trained model (.safetensors)")
    train.add_argument("--out", type=Path, help="write the result record (JSON)")
    train.set_defaults(func=_train)

    sweep = verbs.add_parser("sweep", help="run a benchmark suite, one subprocess per cell")
    sweep.add_argument("--suite", default="quick", help="quick|standard|full or a YAML path")
    sweep.add_argument("--run-id", help="default: the current UTC time")
    sweep.add_argument("--resume", action="store_true",
                       help="finish run --run-id, skipping cells already recorded")
    sweep.add_argument("--only", help="run only cells matching K=V[,K=V...], e.g. model=dcn")
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
    gate.add_argument("--max-slowdown", type=float, default=0.25,
                      help="allowed drop of normalised throughput (fraction, default 0.25)")
    gate.add_argument("--max-auc-drop", type=float, default=0.005,
                      help="allowed AUC drop against the baseline (default 0.005)")
    gate.add_argument("--max-memory-growth", type=float, default=0.15,
                      help="allowed peak RSS growth (fraction, default 0.15)")
    gate.add_argument("--max-bayes-gap", type=float, default=0.05,
                      help="allowed AUC gap to the Bayes optimum of synthetic data")
    gate.set_defaults(func=_gate)

    drift = verbs.add_parser("hash-drift", help="memory of a hash table on a drifting stream")
    drift.add_argument("--keys", type=int, default=2_000_000, help="distinct keys streamed")
    drift.add_argument("--window", type=int, default=100_000, help="live key population")
    drift.add_argument("--evict", type=int, default=20, help="idle steps before eviction")
    drift.add_argument("--out", type=Path, help="write the measurements (JSON)")
    drift.set_defaults(func=_hash_drift)

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


if __name__ == "__main__":
    sys.exit(main())
