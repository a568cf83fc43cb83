"""One online cell: a broker, a producer of the drifting stream, the online trainer (in
this process) and a serving process, run together; then the record.

::

    cell (this process)           run_online: consume -> predict -> train -> publish
    ├── broker                    bench/services.py KafkaBroker (or the user's cluster)
    ├── python -m bench.cli stream produce --drifting ...   at online.rate rows/s
    └── python -m mindrec.serve VERSIONS                    HTTP on 127.0.0.1
        └── probed by a thread here: /version every 50 ms, /predict every 20 ms

Every process is tied to this one (:mod:`bench.job.lifetime`) and stopped at the end.
"""
from __future__ import annotations

import dataclasses
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

from bench.job import online_metrics
from bench.job.launcher import tail
from bench.job.lifetime import start_tied
from bench.job.measure import OtherLoad, PeakMemorySampler
from bench.job.runner import spec_block
from bench.results import new_record, new_run_id, now_iso
from bench.services import ServiceError, create_topic, kafka_bootstrap
from mindrec.config import RunConfig
from mindrec.data.drifting import DriftingSpec, DriftingStream
from mindrec.npz import load_npz
from mindrec.stream.online import run_online

PARTITIONS = 2
_SERVING_START_S = 120.0
_VERSION_POLL_S = 0.05
_PREDICT_EVERY_S = 0.02
_PRODUCER_GRACE_S = 60.0
_TRUTH_CHUNK = 1 << 16


def online_and_measure(run: RunConfig, drifting: DriftingSpec, *, run_id: str | None = None,
                       cell_id: str | None = None, measurement_id: str | None = None,
                       preset: str | None = None, suite: str | None = None,
                       bootstrap_servers: str | None = None, work_dir: Path | None = None,
                       progress: TextIO | None = sys.stderr) -> dict:
    """Stream ``drifting`` (its rows at ``run.online.rate``) through a broker to the
    online trainer and a serving process; return the record of what was measured."""
    batch = run.train.batch_size
    rows = drifting.rows // batch * batch
    online = dataclasses.replace(
        run.online, max_rows=rows, freeze_after_rows=run.online.freeze_after_rows or rows // 5,
        topic=f"{run.online.topic}-{os.getpid()}-{int(time.time())}")
    run = dataclasses.replace(run, online=online)
    started_at = now_iso()
    with ExitStack() as stack:
        work = Path(work_dir) if work_dir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="mindrec-online-")))
        out = work / "online"
        bootstrap = stack.enter_context(kafka_bootstrap(bootstrap_servers, log_dir=work))
        create_topic(bootstrap, online.topic, PARTITIONS)
        serving = stack.enter_context(_serving(out / "versions", work))
        stream = DriftingStream(drifting)
        probe = stack.enter_context(_Probe(serving, stream.rows(0, 1).lines))
        producer = stack.enter_context(_producer(bootstrap, online, drifting, rows, work))
        with PeakMemorySampler() as memory, OtherLoad() as load:
            summary = run_online(run, bootstrap, out, progress)
        _check_finished(summary, rows, online, producer, work)
        probe.stop()
        arrays = _progressive(out)
    metrics = {**online_metrics.throughput(arrays),
               **online_metrics.freshness(arrays, summary["versions"], probe.first_seen_ms),
               **online_metrics.quality(arrays, _true_p(stream, arrays["rows"])),
               **online_metrics.deltas(summary["versions"]),
               **online_metrics.serving_latency(probe.latencies, summary["versions"],
                                                probe.first_seen_ms),
               "online_rows_trained": summary["counters"]["rows_trained"],
               "online_bad_rows": summary["counters"]["bad"],
               "peak_rss_mb": memory.peak_rss_mb, "peak_device_mb": None,
               "other_cpu_fraction": load.other_cpu_fraction, "load_avg_1m": load.load_avg_1m}
    cell_id = cell_id or f"{run.model}-online"
    spec = spec_block(run, dataset=f"drifting rows={drifting.rows} vocab={drifting.vocab} "
                      f"seed={drifting.seed} drift={drifting.drift} "
                      f"new={drifting.new_value_fraction}", rows=rows, data_vocab=None,
                      table_size=run.embedding.capacity, hardware="cpu",
                      steps=summary["counters"]["steps"], preset=preset,
                      measurement_id=measurement_id or cell_id)
    return new_record(run_id=run_id or new_run_id(), cell_id=cell_id,
                      suite=suite, spec=spec, metrics=metrics, started_at=started_at)


def _check_finished(summary: dict, rows: int, online, producer: subprocess.Popen,
                    work: Path) -> None:
    """Raise, naming the logs, unless every row was trained and the producer is done."""
    trained = summary["counters"]["rows_trained"]
    if trained < rows:
        raise RuntimeError(f"the online trainer stopped after {trained:,} of {rows:,} rows: "
                           f"no full batch came for {online.idle_stop_s:g} s (logs of the "
                           f"producer and the broker in {work})")
    try:
        code = producer.wait(_PRODUCER_GRACE_S)
    except subprocess.TimeoutExpired:
        code = None
    if code != 0:
        what = "did not finish" if code is None else f"exited with code {code}"
        raise ServiceError(f"the producer {what} (its log: {work / 'producer.log'})")


def _progressive(out: Path) -> dict[str, np.ndarray]:
    """The trainer's per-row log: its parts, one per checkpoint, joined."""
    parts = [load_npz(path, "progressive log", ("rows", "event_ms", "labels", "online"))
             for path in sorted(out.glob("progressive-*.npz"))]
    if not parts:
        raise RuntimeError(f"{out}: the trainer wrote no progressive-*.npz")
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _true_p(stream: DriftingStream, rows: np.ndarray) -> np.ndarray:
    """The true click probability of each of ``rows`` (stream row numbers)."""
    lo, hi = int(rows.min()), int(rows.max()) + 1
    p = np.concatenate([stream.sample(start, min(hi, start + _TRUTH_CHUNK)).p
                        for start in range(lo, hi, _TRUTH_CHUNK)])  # features: a chunk at once
    return p[rows - lo]


@contextmanager
def _producer(bootstrap: str, online, drifting: DriftingSpec, rows: int,
              work: Path) -> Iterator[subprocess.Popen]:
    """The producer process, killed at the end if still running."""
    command = [sys.executable, "-m", "bench.cli", "stream", "produce",
               "--bootstrap-servers", bootstrap, "--topic", online.topic,
               "--drifting", str(drifting.rows), "--vocab", str(drifting.vocab),
               "--seed", str(drifting.seed), "--drift", str(drifting.drift),
               "--new-value-fraction", str(drifting.new_value_fraction),
               "--max-rows", str(rows)]
    if online.rate is not None:
        command += ["--rate", str(online.rate)]
    with open(work / "producer.log", "wb") as log:
        process = start_tied(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


@contextmanager
def _serving(versions: Path, work: Path) -> Iterator[str]:
    """A serving process on the trainer's versions; yields its ``HOST:PORT``."""
    ready = work / "serving.port"
    log_path = work / "serving.log"
    command = [sys.executable, "-m", "mindrec.serve", str(versions), "--port", "0",
               "--ready-file", str(ready)]
    with open(log_path, "wb") as log:
        process = start_tied(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + _SERVING_START_S
            while not ready.exists():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise ServiceError(f"the serving process did not start; the end of "
                                       f"{log_path}:\n{tail(log_path)}")
                time.sleep(0.05)
            yield f"127.0.0.1:{int(ready.read_text())}"
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
            process.wait()


class _Probe:
    """A thread asking the serving process which version it answers with (when each was
    first seen) and timing one-row predictions."""

    def __init__(self, address: str, lines: list[bytes]):
        self.address = address
        self.body = b"\n".join(lines)
        self.first_seen_ms: dict[int, int] = {}
        self.latencies: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="serving-probe", daemon=True)

    def __enter__(self) -> _Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        host, port = self.address.rsplit(":", 1)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        next_version = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_version:
                next_version = now + _VERSION_POLL_S
                version = _get_json(connection, "GET", "/version").get("version")
                if version is not None:
                    self.first_seen_ms.setdefault(int(version), int(time.time() * 1000))
            if self.first_seen_ms:
                sent = int(time.time() * 1000)
                start = time.perf_counter()
                _get_json(connection, "POST", "/predict", self.body)
                self.latencies.append((sent, (time.perf_counter() - start) * 1e3))
            self._stop.wait(_PREDICT_EVERY_S)


def _get_json(connection: http.client.HTTPConnection, method: str, path: str,
              body: bytes | None = None) -> dict:
    """One request on a kept-alive connection; {} when the server could not answer."""
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException):
        connection.close()
        return {}
    return json.loads(data) if response.status == 200 else {}
