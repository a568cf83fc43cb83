"""The stream consumer: the same model inputs as the offline path, offsets that account
for every message, malformed events counted and skipped."""
from __future__ import annotations

import numpy as np
import pytest
from confluent_kafka import Producer

from bench.job.launcher import free_port
from mindrec.data.criteo import encode_keys, iter_chunks, iter_raw_lines
from mindrec.stream.consumer import StreamConsumer
from mindrec.stream.kafka import StreamError, row_key
from mindrec.stream.producer import produce

pytestmark = pytest.mark.integration


def _batches(consumer, size):
    out = []
    while (batch := consumer.next_batch(size, timeout_s=2.0)) is not None:
        out.append(batch)
    return out


def test_stream_and_file_give_identical_model_inputs(tiny_raw, broker, topic):
    name = topic(1)
    path = tiny_raw / "train.txt"
    sent = produce(broker, name, iter_raw_lines(path), max_rows=5000, progress=None)
    assert sent.rows == 5000
    consumer = StreamConsumer(broker, name, progress=None)
    try:
        batches = _batches(consumer, 1000)
    finally:
        consumer.close()
    offline = encode_keys(next(iter_chunks(path, chunk_rows=5000)))
    streamed = [np.concatenate([getattr(b, f) for b in batches])
                for f in ("keys", "vals", "labels")]
    np.testing.assert_array_equal(streamed[0], offline[0])
    np.testing.assert_array_equal(streamed[1], offline[1])
    np.testing.assert_array_equal(streamed[2][:, 0], offline[2])
    assert np.concatenate([b.rows for b in batches]).tolist() == list(range(5000))
    assert batches[-1].positions == {0: 5000}


def test_malformed_events_are_counted_skipped_and_consumed(tiny_raw, broker, topic):
    name = topic(1)
    lines = next(iter_raw_lines(tiny_raw / "train.txt", chunk_rows=12))
    producer = Producer({"bootstrap.servers": broker})
    events = [(row_key(i), line) for i, line in enumerate(lines)]
    events[2] = (row_key(2), b"1\t2\t3")  # wrong field count
    events[5] = (row_key(5), lines[5].replace(b"\t", b"\tzz", 1))  # a bad integer
    events[7] = (b"not-a-row", lines[7])  # a key that is no row number
    events[8] = (row_key(8), lines[8] + b"\n" + lines[9])  # two rows in one event
    for key, value in events:
        producer.produce(name, key=key, value=value, partition=0)
    assert producer.flush(30) == 0
    consumer = StreamConsumer(broker, name, progress=None)
    try:
        first = consumer.next_batch(4, timeout_s=5.0)
        second = consumer.next_batch(4, timeout_s=5.0)
        assert consumer.next_batch(4, timeout_s=1.0) is None  # 12 - 4 bad = 8 good rows
    finally:
        consumer.close()
    assert first.rows.tolist() == [0, 1, 3, 4]
    assert (first.bad, first.positions) == (1, {0: 5})
    assert second.rows.tolist() == [6, 9, 10, 11]
    assert (second.bad, second.positions) == (3, {0: 12})


def test_positions_resume_where_a_checkpoint_left(tiny_raw, broker, topic):
    name = topic(2)
    produce(broker, name, iter_raw_lines(tiny_raw / "train.txt"), max_rows=4000,
            progress=None)
    consumer = StreamConsumer(broker, name, progress=None)
    try:
        first = consumer.next_batch(1000, timeout_s=5.0)
    finally:
        consumer.close()
    resumed = StreamConsumer(broker, name, positions=first.positions, progress=None)
    try:
        rest = _batches(resumed, 1000)
    finally:
        resumed.close()
    rows = np.concatenate([first.rows, *[b.rows for b in rest]])
    assert sorted(rows.tolist()) == list(range(4000))


def test_a_missing_topic_and_a_missing_broker_are_named(broker, topic):
    with pytest.raises(StreamError, match="no topic 'absent'"):
        StreamConsumer(broker, "absent", wait_s=5, progress=None)
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(StreamError, match=f"no Kafka broker answered at {address} "):
        StreamConsumer(address, "rows", wait_s=1, progress=None)
