"""Serving model versions: the served model predicts as the trainer does, follows deltas
in order, refuses damaged ones without serving half a version, and answers over HTTP."""
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import psutil
import pytest
from online_model import Trainer, tiny_run

from mindrec.data.criteo import CriteoFormatError, encode_keys, parse_lines
from mindrec.serve import model as model_module
from mindrec.serve.app import listening_socket
from mindrec.serve.model import NotReady, ServedModel
from mindrec.stream.versions import VersionReader, VersionWriter, network_parts


@pytest.fixture(scope="module")
def lines(tiny_raw):
    return (tiny_raw / "train.txt").read_bytes().splitlines(keepends=True)


@pytest.fixture
def unseen(lines):
    """100 rows the trainers of these tests never train on."""
    return lines[-100:]


def assert_same(served, expected):
    np.testing.assert_allclose(served, expected, rtol=1e-6, atol=1e-7)


def table_state(network):
    """Every hash table's rows by key, and the other parameters, by parameter path."""
    _, tables, dense = network_parts(network)
    state = {}
    for name, table in tables.items():
        keys = table.keys()
        order = np.argsort(keys)
        state[name] = (keys[order], table.values()[order])
    return state, {name: param.asnumpy() for name, param in dense.items()}


def assert_same_state(a, b):
    (tables_a, dense_a), (tables_b, dense_b) = a, b
    assert tables_a.keys() == tables_b.keys() and dense_a.keys() == dense_b.keys()
    for name in tables_a:
        np.testing.assert_array_equal(tables_a[name][0], tables_b[name][0])
        np.testing.assert_array_equal(tables_a[name][1], tables_b[name][1])
    for name in dense_a:
        np.testing.assert_array_equal(dense_a[name], dense_b[name])


@pytest.mark.parametrize("model", ["wide_deep", "dcn", "deepfm"])
def test_served_predictions_equal_the_trainers(model, lines, unseen, tmp_path):
    trainer = Trainer(tiny_run(model), lines).train(3)
    served = ServedModel(tmp_path)
    assert served.update() is False and served.status()["version"] is None  # nothing yet
    with pytest.raises(NotReady):
        served.predict(unseen)
    VersionWriter(tmp_path, trainer.run).publish(trainer.network, {"newest_event_ms": 5})
    assert served.update() is True
    assert served.status()["version"] == 1 and served.status()["info"] == {"newest_event_ms": 5}
    assert_same(served.predict(unseen), trainer.predict(unseen))
    assert_same(served.predict(unseen[:1]), trainer.predict(unseen[:1]))


def test_deltas_applied_in_order_equal_a_full_snapshot(lines, unseen, tmp_path):
    # Eviction after 2 idle steps: the deltas remove keys as well as write rows.
    trainer = Trainer(tiny_run(evict_filter_value=2), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run, full_every=3)
    served = ServedModel(tmp_path)
    for _ in range(3):  # version 1 full, 2 and 3 deltas, each applied on its own
        writer.publish(trainer.train(2).network, {})
        assert served.update() is True
    assert sum(e.removed for e in VersionReader(tmp_path).versions()) > 0
    full = writer.publish(trainer.network, {})  # version 4: a full one of the same state
    assert full.kind == "full"
    snapshot = VersionReader(tmp_path).load(4)
    order = np.argsort(snapshot.delta.keys)
    expected = ({name: (snapshot.delta.keys[order], rows[order])
                 for name, rows in snapshot.delta.values.items()}, snapshot.dense)
    assert served.status()["version"] == 3
    assert_same_state(table_state(served.network), expected)
    assert_same_state(table_state(trainer.network), expected)
    assert_same(served.predict(unseen), trainer.predict(unseen))


def test_a_version_already_served_is_not_applied_again(lines, unseen, tmp_path):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run)
    served = ServedModel(tmp_path)
    writer.publish(trainer.network, {})
    writer.publish(trainer.train(1).network, {})
    assert served.update() is True and served.status()["version"] == 2
    loaded_at, before = served.status()["loaded_at"], table_state(served.network)
    assert served.update() is False and served.update() is False
    assert served.status()["loaded_at"] == loaded_at and served.status()["error"] is None
    assert_same_state(table_state(served.network), before)
    assert_same(served.predict(unseen), trainer.predict(unseen))


def test_unknown_keys_read_the_default_row_and_are_not_admitted(lines, unseen, tmp_path):
    trainer = Trainer(tiny_run(), lines).train(1)
    VersionWriter(tmp_path, trainer.run).publish(trainer.network, {})
    served = ServedModel(tmp_path)
    served.update()
    rows = len(served.network.hash_index)
    keys = encode_keys(parse_lines(unseen, source="check"))[0]
    assert (served.network.hash_index.lookup(keys) == 0).any()  # keys it never trained
    served.predict(unseen)
    assert len(served.network.hash_index) == rows


def test_a_gap_reloads_from_the_newest_full_version(lines, unseen, tmp_path):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run, full_every=3)
    served = ServedModel(tmp_path)
    writer.publish(trainer.network, {})
    served.update()
    published = [writer.publish(trainer.train(1).network, {}) for _ in range(4)]
    assert [p.kind for p in published] == ["delta", "delta", "full", "delta"]
    published[0].path.unlink()  # delta 2 is gone: the deltas after 1 cannot be followed
    assert served.update() is True
    assert served.status()["version"] == 5 and served.status()["error"] is None
    assert_same(served.predict(unseen), trainer.predict(unseen))


def test_a_damaged_delta_is_refused_and_the_last_good_version_served(lines, unseen, tmp_path,
                                                                     capfd):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run, full_every=3)
    served = ServedModel(tmp_path)
    writer.publish(trainer.network, {})
    served.update()
    good = trainer.predict(unseen)
    damaged = writer.publish(trainer.train(1).network, {}).path
    data = bytearray(damaged.read_bytes())
    data[-200] ^= 0xFF
    damaged.write_bytes(bytes(data))
    writer.publish(trainer.train(1).network, {})  # delta 3 needs the damaged delta 2
    for _ in range(2):
        assert served.update() is False
    error = served.status()["error"]
    assert "v00000002.delta.npz: version 2: sha256" in error and served.status()["version"] == 1
    assert capfd.readouterr().err.count(error) == 1  # reported once, not at every poll
    assert_same(served.predict(unseen), good)
    writer.publish(trainer.train(1).network, {})  # version 4: full, no need for version 2
    assert served.update() is True
    status = served.status()
    assert (status["version"], status["kind"], status["error"]) == (4, "full", None)
    assert_same(served.predict(unseen), trainer.predict(unseen))


def test_an_update_that_breaks_off_serves_nothing_new_then_is_redone(lines, unseen, tmp_path,
                                                                     monkeypatch):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run)
    served = ServedModel(tmp_path)
    writer.publish(trainer.network, {})
    served.update()
    good = trainer.predict(unseen)
    writer.publish(trainer.train(1).network, {})

    def breaks(*args):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(model_module, "apply_delta", breaks)
    with pytest.raises(RuntimeError, match="interrupted"):
        served.update()
    assert served.status()["version"] == 1
    assert_same(served.predict(unseen), good)
    monkeypatch.undo()
    assert served.update() is True  # the broken replica is rebuilt from version 1
    assert served.status()["version"] == 2
    assert_same(served.predict(unseen), trainer.predict(unseen))
    writer.publish(trainer.train(1).network, {})
    assert served.update() is True  # both replicas are level again: a delta applies
    assert_same(served.predict(unseen), trainer.predict(unseen))


def test_predictions_during_updates_see_whole_versions(lines, unseen, tmp_path, wait_for):
    trainer = Trainer(tiny_run(), lines).train(1)
    writer = VersionWriter(tmp_path, trainer.run, full_every=3)
    served = ServedModel(tmp_path)
    expected, seen = {}, []
    training = threading.Lock()  # one MindSpore user at a time: the trainer or the server
    stop = threading.Event()

    def publish():
        with training:
            version = writer.publish(trainer.train(1).network, {}).version
            expected[version] = trainer.predict(unseen)

    def client():
        while not stop.is_set():
            with training:
                seen.append(served.predict_versioned(unseen))
            time.sleep(0.001)  # let the trainer take its turn

    publish()
    served.update()
    thread = threading.Thread(target=client)
    thread.start()
    try:
        for _ in range(6):
            publish()
            assert served.update() is True  # while the client predicts
            version = served.status()["version"]
            assert wait_for(lambda: any(v == version for v, _ in seen[-3:]), 30)
    finally:
        stop.set()
        thread.join()
    versions = [version for version, _ in seen]
    assert versions == sorted(versions) and set(versions) == set(range(1, 8))
    for version, p in seen:
        assert_same(p, expected[version])


def test_a_malformed_line_is_an_error_naming_it(lines, tmp_path):
    trainer = Trainer(tiny_run(), lines).train(1)
    VersionWriter(tmp_path, trainer.run).publish(trainer.network, {})
    served = ServedModel(tmp_path)
    served.update()
    with pytest.raises(CriteoFormatError, match="request:2: "):
        served.predict([lines[0], b"1\tx" + lines[1][3:]])


def test_the_server_socket_listens_on_localhost_with_its_protocol_named():
    with listening_socket(0) as sock:  # asyncio sets TCP_NODELAY on such sockets only
        assert sock.getsockname()[0] == "127.0.0.1" and sock.proto == socket.IPPROTO_TCP


def http(port, path, body=None):
    """``(status, JSON)`` of a request to the server on 127.0.0.1:``port``."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def start_server(versions, tmp_path, wait_for, name="server"):
    """A serving process on ``versions``, and its port once it is ready."""
    ready = tmp_path / f"{name}.port"
    with open(tmp_path / f"{name}.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "mindrec.serve", str(versions),
                                   "--port", "0", "--ready-file", str(ready),
                                   "--poll-s", "0.1"], stdout=log, stderr=log)
    assert wait_for(lambda: ready.exists() or server.poll() is not None, 120), "no ready file"
    assert ready.exists(), (tmp_path / f"{name}.log").read_text()[-3000:]
    return server, int(ready.read_text())


@pytest.mark.integration
def test_the_http_server_serves_versions_on_localhost(lines, unseen, tmp_path, wait_for):
    trainer = Trainer(tiny_run(), lines).train(2)
    versions = tmp_path / "versions"
    writer = VersionWriter(versions, trainer.run)
    writer.publish(trainer.network, {"newest_event_ms": 1000})
    server, port = start_server(versions, tmp_path, wait_for)
    try:
        listening = [c.laddr for c in psutil.Process(server.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert listening == [("127.0.0.1", port)]

        assert http(port, "/healthz") == (200, {"status": "ok", "version": 1, "error": None})
        status, body = http(port, "/version")
        assert status == 200 and body["version"] == 1
        assert body["info"] == {"newest_event_ms": 1000}
        status, body = http(port, "/predict", b"".join(unseen))
        assert status == 200 and body["version"] == 1
        assert_same(np.array(body["p"], np.float32), trainer.predict(unseen))
        status, body = http(port, "/predict", unseen[0].rstrip(b"\n"))  # no final newline
        assert status == 200 and len(body["p"]) == 1

        bad = b"".join([unseen[0], b"0\t1\t2\n", unseen[1]])
        status, body = http(port, "/predict", bad)
        assert status == 400 and body["line"] == 2 and "columns" in body["reason"]
        assert body["error"].startswith("request:2: ")
        assert http(port, "/predict", b"")[0] == 400

        writer.publish(trainer.train(1).network, {"newest_event_ms": 2000})
        assert wait_for(lambda: http(port, "/version")[1]["version"] == 2, 60)
        status, body = http(port, "/predict", b"".join(unseen))
        assert body["version"] == 2
        assert_same(np.array(body["p"], np.float32), trainer.predict(unseen))
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = (tmp_path / "server.log").read_text()
    # uvicorn shuts down cleanly, then re-raises the signal it caught.
    assert server.returncode == -signal.SIGTERM and "Traceback" not in log, log[-3000:]


@pytest.mark.integration
def test_killed_while_applying_a_restart_serves_a_complete_version(lines, unseen, tmp_path,
                                                                   wait_for):
    """SIGKILL while versions stream in (each a delta being applied); the restarted
    server answers with the newest version, predicting exactly as the trainer did."""
    trainer = Trainer(tiny_run(), lines).train(1)
    versions = tmp_path / "versions"
    writer = VersionWriter(versions, trainer.run, full_every=50)
    writer.publish(trainer.network, {})
    server, port = start_server(versions, tmp_path, wait_for)
    try:
        for _ in range(6):  # deltas land while the server polls every 0.1 s
            writer.publish(trainer.train(1).network, {})
            time.sleep(0.05)
    finally:
        server.kill()
        server.wait(timeout=30)
    newest = writer.publish(trainer.train(1).network, {}).version
    server, port = start_server(versions, tmp_path, wait_for, name="restarted")
    try:
        assert wait_for(lambda: http(port, "/version")[1].get("version") == newest, 60)
        status, body = http(port, "/predict", b"".join(unseen))
        assert status == 200 and body["version"] == newest
        assert_same(np.array(body["p"], np.float32), trainer.predict(unseen))
    finally:
        server.terminate()
        server.wait(timeout=30)
