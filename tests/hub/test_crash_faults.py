"""kill -9 with real processes: the hub dies in the middle of a publish and of an upload, restarts,
and nothing is half there; the device keeps its last good model and its update is stored once."""
from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time
from urllib.parse import urlsplit

import numpy as np
from tests.helpers.bundles import PY, ROOT, HubProcess, fake_update, init_hub, run_cli, write_bundle

from edge_client.api import EdgeClient
from edge_client.updates import UpdateQueue



def _padded_onnx(onnx_model, path, megabytes: int):
    """A valid ONNX model with an unused initializer: big enough that copying it takes a while."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_model))
    pad = np.random.default_rng(0).standard_normal(megabytes * 262_144).astype(np.float32)
    model.graph.initializer.append(numpy_helper.from_array(pad, name="padding"))
    onnx.save(model, str(path))
    return path


def _invariants(root) -> set[int]:
    """Every version folder has its row and every row its complete folder; no temporary leftovers."""
    db = sqlite3.connect(root / "registry.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {r[0] for r in db.execute("SELECT version FROM versions")}
    finally:
        db.close()
    folders = {int(p.name) for p in (root / "versions").iterdir() if p.name.isdigit()}
    assert folders == rows, (folders, rows)
    assert not [p for p in (root / "versions").iterdir() if p.name.startswith(".")]
    for version in rows:
        manifest = json.loads((root / "versions" / str(version) / "manifest.json").read_bytes())
        for art in manifest["artifacts"]:
            assert (root / "versions" / str(version) / art["name"]).stat().st_size == art["size"]
    return rows


def _kill_when(cmd, ready, timeout: float = 120) -> bool:
    """Run cmd; SIGKILL it as soon as ready() holds. Returns False if it finished first."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.001)
        return False
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_kill_during_publish_leaves_no_half_version(tmp_path, keys, onnx_model):
    root = init_hub(tmp_path / "hub", keys[1])
    write_bundle(tmp_path / "dist1", version=1, model_file=onnx_model, key=keys[0])
    assert run_cli("hub", "publish", tmp_path / "dist1", "--root", root).returncode == 0
    phone = EdgeClient(tmp_path / "phone")
    with HubProcess(root) as hub:
        assert phone.sync(hub.url, public_key=keys[1]).version == 1
    big = _padded_onnx(onnx_model, tmp_path / "big.onnx", 40)
    write_bundle(tmp_path / "dist2", version=2, model_file=big, key=keys[0])
    cmd = [PY, "-m", "hub", "publish", str(tmp_path / "dist2"), "--root", str(root)]
    versions = root / "versions"
    points = {"copying into a temporary folder": lambda: any(p.name.startswith(".2.") for p in versions.iterdir()),
              "renamed, row not committed": lambda: (versions / "2").exists()}
    killed = []
    for point, ready in points.items():
        if _kill_when(cmd, ready):
            killed.append(point)
        with HubProcess(root) as hub:  # the restart sweeps what the dead publish left
            published = _invariants(root)
            result = phone.sync(hub.url)
            assert result.version == (2 if 2 in published else 1)
        if 2 in published:
            break
    print(f"\nkilled while: {killed}")
    assert killed, "the publish was never caught in the act"
    assert phone.installed_model().version in (1, 2)
    if 2 not in _invariants(root):  # a publish after the crashes completes normally
        assert run_cli("hub", "publish", tmp_path / "dist2", "--root", root).returncode == 0
    with HubProcess(root) as hub:
        assert phone.sync(hub.url).version == 2
    assert phone.store.load(2).artifact["size"] == big.stat().st_size  # complete and verified


def _send_partial(url: str, token: str, body: bytes, fraction: float) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = (f"POST /v1/updates HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock.sendall(head + body[:int(len(body) * fraction)])
    return sock


def _update_rows(root) -> int:
    db = sqlite3.connect(root / "registry.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM updates").fetchone()[0]
    finally:
        db.close()


def test_kill_during_an_upload_stores_it_once_or_not_at_all(tmp_path, keys, onnx_model):
    root = init_hub(tmp_path / "hub", keys[1], "--min-updates", "99")
    write_bundle(tmp_path / "dist1", version=1, model_file=onnx_model, key=keys[0])
    assert run_cli("hub", "publish", tmp_path / "dist1", "--root", root).returncode == 0
    token = run_cli("hub", "token", "issue", "--name", "tablet", "--root", root).stdout.strip()
    queue = UpdateQueue(tmp_path / "phone")
    first, second = (queue.add(fake_update(1, seed=s), photos=10) for s in (1, 2))
    for update_id in (first, second):
        queue.approve(update_id)
    body = lambda i: json.dumps(queue.payload(i), separators=(",", ":")).encode()  # noqa: E731 - the exact bytes

    hub = HubProcess(root)
    sock = _send_partial(hub.url, token, body(first), 0.5)  # half the body is on the wire ...
    hub.stop()  # ... and the hub is killed (SIGKILL)
    sock.close()
    assert _update_rows(root) == 0 and not (root / "updates").exists()  # nothing half stored, no orphan file
    assert queue.upload(hub.url, token).waiting == [first, second]  # the hub is down: the device keeps them

    hub = HubProcess(root)
    sock = _send_partial(hub.url, token, body(first), 1.0)  # the whole body; the answer never arrives
    time.sleep(0.05)
    hub.stop()
    sock.close()
    stored_before = _update_rows(root)
    assert stored_before in (0, 1)
    with HubProcess(root) as hub:
        report = queue.upload(hub.url, token)  # the device resends the same bytes: 200 or 202, never twice
        assert report.uploaded == [first, second], report.messages
    db = sqlite3.connect(root / "registry.sqlite")
    rows = db.execute("SELECT status FROM updates ORDER BY id").fetchall()
    db.close()
    assert rows == [("replaced",), ("pending",)]  # first, then replaced by the same device's second
    assert not [p for p in root.rglob("*.tmp")]
