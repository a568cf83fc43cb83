"""The online-learning verbs of ``mindrec-bench``: ``stream broker``, ``stream produce``,
``online`` and ``serve`` (the loop of docs/online-learning.md)."""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from bench.run_args import RUN_FLAGS, add_run_arguments, run_config_from_args
from mindrec.config import OnlineConfig
from mindrec.data.drifting import DriftingSpec
from mindrec.serve import command as serve_command
from mindrec.stream.producer import DEFAULT_LINGER_MS

_ONLINE = OnlineConfig()
# The flags of `online` that set a field of the online section (any field: --set).
_ONLINE_FLAGS = [flag for flag, (section, _) in RUN_FLAGS.items() if section == "online"]


def add_verbs(verbs) -> None:
    """Add the online-learning verbs to the ``mindrec-bench`` parser's ``verbs``."""
    stream = verbs.add_parser("stream", help="a local Kafka-protocol broker; replay rows into it")
    stream_verbs = stream.add_subparsers(dest="stream_verb", required=True)

    broker = stream_verbs.add_parser(
        "broker", help="run a local broker (memory only) on 127.0.0.1 until interrupted")
    broker.add_argument("--topic", action="append", default=[],
                        help="create this topic (repeatable)")
    broker.add_argument("--partitions", type=int, default=2, help="partitions per topic")
    broker.set_defaults(func=_broker)

    produce = stream_verbs.add_parser(
        "produce", help="replay raw Criteo rows into a topic at a target rate")
    produce.add_argument("--bootstrap-servers", required=True, help="HOST:PORT[,...]")
    produce.add_argument("--topic", default=_ONLINE.topic)
    source = produce.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", type=Path,
                        help="a raw Criteo file (plain or .gz), replayed in order")
    source.add_argument("--drifting", type=int, metavar="ROWS",
                        help="a drifting synthetic stream of ROWS rows (its click model "
                             "drifts and new values appear; see mindrec/data/drifting.py)")
    drifting = DriftingSpec(rows=1)
    for name in ("vocab", "seed", "drift", "new_value_fraction"):
        default = getattr(drifting, name)
        produce.add_argument("--" + name.replace("_", "-"), type=type(default),
                             default=default, help=f"--drifting: {name} (default {default})")
    produce.add_argument("--rate", type=float, help="rows per second (default: as fast as "
                                                    "the broker takes them)")
    produce.add_argument("--max-rows", type=int, help="stop after this many rows")
    produce.add_argument("--linger-ms", type=int, default=DEFAULT_LINGER_MS,
                         help=f"how long rows are gathered into one batch (default "
                              f"{DEFAULT_LINGER_MS}; see mindrec/stream/producer.py)")
    produce.add_argument("--first-row", type=int, default=0,
                         help="the row number (message key) of the first row")
    produce.set_defaults(func=_produce)

    online = verbs.add_parser(
        "online", help="train on a stream, publish model versions, checkpoint with offsets",
        description="Consume a topic of raw Criteo rows, predict each batch before training "
                    "on it, train, publish a model version every --publish-every-s seconds "
                    "and checkpoint (with the stream offsets) every --checkpoint-every-steps; "
                    "started again on the same --out it resumes from its checkpoint.")
    online.add_argument("--bootstrap-servers", required=True, help="HOST:PORT[,...]")
    online.add_argument("--out", type=Path, required=True,
                        help="checkpoint, versions/ and the measurements")
    add_run_arguments(online, "online.full_every=10 (embedding.kind is hash)")
    online.add_argument("--batch-size", type=int, help="default: the preset's")
    online.add_argument("--capacity", type=int, help="rows of the hash tables (required)")
    helps = {"topic": "the topic of raw rows",
             "publish_every_s": "seconds between model versions",
             "publish_every_steps": "steps between model versions (instead)",
             "checkpoint_every_steps": "steps between checkpoints",
             "full_every": "every this many versions is a full snapshot",
             "freeze_after_rows": "freeze a copy of the model after these rows and predict "
                                  "with it too",
             "max_rows": "stop after training this many rows",
             "idle_stop_s": "stop when no full batch came for this long",
             "broker_wait_s": "how long to wait for the broker at the start"}
    for name in _ONLINE_FLAGS:
        default = getattr(_ONLINE, name)
        kind = type(default) if default is not None else (
            float if name.endswith("_s") else int)
        online.add_argument("--" + name.replace("_", "-"), type=kind,
                            help=f"{helps[name]} (default {default})")
    online.set_defaults(func=_online)

    serve = verbs.add_parser("serve", help="serve the model versions of an online trainer "
                                           "over HTTP on 127.0.0.1")
    serve_command.add_arguments(serve)
    serve.set_defaults(func=_serve)


def _broker(args) -> int:
    from bench.services import KafkaBroker, create_topic
    with KafkaBroker() as broker:
        for topic in args.topic:
            create_topic(broker.bootstrap_servers, topic, args.partitions)
        print(f"Kafka-protocol broker at {broker.bootstrap_servers} (memory only); "
              f"Ctrl-C stops it", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def _produce(args) -> int:
    from mindrec.data.criteo import iter_raw_lines
    from mindrec.data.drifting import DriftingStream
    from mindrec.stream.producer import produce
    if args.input is not None:
        chunks = iter_raw_lines(args.input)
    else:
        spec = DriftingSpec(rows=args.drifting, vocab=args.vocab, seed=args.seed,
                            drift=args.drift, new_value_fraction=args.new_value_fraction)
        chunks = DriftingStream(spec).chunks(start=args.first_row)
    result = produce(args.bootstrap_servers, args.topic, chunks,
                     rate=args.rate, first_row=args.first_row, max_rows=args.max_rows,
                     linger_ms=args.linger_ms, progress=sys.stderr)
    print(f"produced {result.rows:,} rows (from row {result.first_row}) to {args.topic} in "
          f"{result.wall_s:.1f} s ({result.rows_per_s:,.0f} rows/s)")
    return 0


def _online(args) -> int:
    from mindrec.stream.online import run_online
    args.embedding = "hash"
    run, _ = run_config_from_args(args)
    summary = run_online(run, args.bootstrap_servers, args.out, progress=sys.stderr)
    counters = summary["counters"]
    print(f"trained {counters['rows_trained']:,} rows in {counters['steps']} steps "
          f"({summary['rows_per_s']:,.0f} rows/s in this process), {counters['bad']} "
          f"malformed rows skipped, {len(summary['versions'])} versions published to "
          f"{args.out / 'versions'}")
    return 0


def _serve(args) -> int:
    serve_command.run(args)
    return 0
