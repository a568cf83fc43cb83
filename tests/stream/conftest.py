"""A Kafka-protocol broker for the stream tests, started once per module."""
from __future__ import annotations

import itertools

import pytest

from bench.services import KafkaBroker, create_topic

_topics = itertools.count()


@pytest.fixture(scope="module")
def broker():
    """A broker on 127.0.0.1 (memory only), stopped after the module's tests."""
    with KafkaBroker() as started:
        yield started.bootstrap_servers


@pytest.fixture
def topic(broker):
    """``topic(partitions)``: a new topic of the broker, its name returned."""
    def make(partitions: int = 1) -> str:
        name = f"rows-{next(_topics)}"
        create_topic(broker, name, partitions)
        return name
    return make
