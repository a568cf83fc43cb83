"""Waiting for a broker: retries with a doubling pause, a line per retry, then an error
naming the address (the clock and the admin client are stand-ins: no timing)."""
from __future__ import annotations

import io

import pytest
from confluent_kafka import KafkaException

from mindrec.stream import kafka
from mindrec.stream.kafka import StreamError, key_row, row_key, wait_for_broker


class _Clock:
    """time.monotonic and time.sleep: sleeping moves the clock."""

    def __init__(self):
        self.now = 0.0
        self.slept = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def _admin(failures):
    """An AdminClient whose list_topics fails ``failures`` times, then answers."""
    class Metadata:
        topics = {"rows": type("Topic", (), {"partitions": {0: None, 1: None}})()}

    class Admin:
        calls = 0

        def __init__(self, settings):
            self.settings = settings

        def list_topics(self, timeout):
            Admin.calls += 1
            if Admin.calls <= failures:
                raise KafkaException("Failed to get metadata: Local: Broker transport failure")
            return Metadata()
    return Admin


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(kafka.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(kafka.time, "sleep", fake.sleep)
    return fake


def test_retries_with_a_doubling_pause_until_the_broker_answers(monkeypatch, clock):
    monkeypatch.setattr(kafka, "AdminClient", _admin(failures=3))
    progress = io.StringIO()
    assert wait_for_broker("127.0.0.1:9092", 30, progress) == {"rows": 2}
    assert clock.slept == [0.5, 1.0, 2.0]
    lines = progress.getvalue().splitlines()
    assert lines == [f"no Kafka broker answers at 127.0.0.1:9092 yet; retrying in {s:.1f} s"
                     for s in (0.5, 1.0, 2.0)]


def test_gives_up_after_the_wait_naming_the_address(monkeypatch, clock):
    monkeypatch.setattr(kafka, "AdminClient", _admin(failures=1000))
    with pytest.raises(StreamError, match=r"no Kafka broker answered at 10\.0\.0\.1:9092 "
                                          r"within 10 s .*--bootstrap-servers"):
        wait_for_broker("10.0.0.1:9092", 10, progress=None)
    assert sum(clock.slept) == pytest.approx(10)
    assert max(clock.slept) <= kafka._MAX_RETRY_S


def test_row_keys_round_trip_and_a_foreign_key_is_none():
    assert key_row(row_key(12_345_678_901)) == 12_345_678_901
    assert key_row(b"abc") is None and key_row(None) is None
