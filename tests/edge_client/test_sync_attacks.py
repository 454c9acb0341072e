"""Sync attacks against a real hub and a real static mirror on loopback: withdrawn versions, frozen
and replayed model lists, downgrades after a rollback, plain http, redirects, and two processes on
one EDGE_HOME. Each must leave the last good model active."""
from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time

import pytest
from tests.helpers.bundles import (PY, ROOT, HubProcess, StaticMirror, fake_update, init_hub, mirror_copy, run_cli,
                             write_bundle)

from edge_client.api import EdgeClient
from edge_client.errors import (BusyError, DowngradeError, ExpiredIndexError, InsecureTransportError, NetworkError,
                                SyncError, TrustError)
from edge_client.fetcher import Fetcher, check_transport
from edge_client.updates import UpdateQueue

NAME = "model_fp32.onnx"


@pytest.fixture()
def hub_root(tmp_path, keys):
    return init_hub(tmp_path / "hub", keys[1])


def publish(tmp_path, root, keys, onnx_model, version):
    write_bundle(tmp_path / f"dist{version}", version=version, model_file=onnx_model, key=keys[0])
    r = run_cli("hub", "publish", tmp_path / f"dist{version}", "--root", root)
    assert r.returncode == 0, r.stderr


def test_a_mirror_cannot_serve_a_withdrawn_version(tmp_path, hub_root, keys, onnx_model):
    """Devices on v1; the publisher withdraws v2; a mirror keeps serving v2 with the list signed before."""
    assert run_cli("hub", "configure", "--root", hub_root, "--index-ttl", "6").returncode == 0
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    seen, late = EdgeClient(tmp_path / "seen"), EdgeClient(tmp_path / "late")
    with HubProcess(hub_root) as hub:
        for device in (seen, late):
            assert device.sync(hub.url, public_key=keys[1]).version == 1
        publish(tmp_path, hub_root, keys, onnx_model, 2)
        mirror = mirror_copy(hub.url, tmp_path / "mirror", {2: [NAME]})
        copied = time.monotonic()
        assert run_cli("hub", "withdraw", "2", "--root", hub_root, "--reason", "bad grades").returncode == 0
        assert seen.sync(hub.url).version == 1  # it now holds the newer list: v2 withdrawn
        assert seen.store.index_status().state == "fresh"
    with StaticMirror(mirror) as m:
        with pytest.raises(TrustError, match="older than serial"):  # a replayed list, though not expired
            seen.sync(m.url)
        time.sleep(max(0.0, copied + 6.5 - time.monotonic()))
        with pytest.raises(ExpiredIndexError, match="expired at"):  # a frozen list: refused once it expires
            late.sync(m.url)
    for device in (seen, late):
        assert device.installed_model().version == 1 and device.store.installed_versions() == [1]
    status = late.store.index_status()
    assert status.state == "expired" and "connect and sync" in status.message  # what the app shows


def test_no_downgrade_after_a_rollback_or_a_lost_current_even_with_a_stolen_index_key(tmp_path, hub_root, keys,
                                                                                       onnx_model):
    client = EdgeClient(tmp_path / "phone")
    with HubProcess(hub_root) as hub:
        for version in (1, 2, 3):
            publish(tmp_path, hub_root, keys, onnx_model, version)
            assert client.sync(hub.url, public_key=keys[1]).version == version
        mirror = mirror_copy(hub.url, tmp_path / "mirror", {1: [NAME]})
    assert client.rollback() == 2
    (client.home / "current").unlink()  # and then `current` is lost
    # The attacker stole the hub's online index key and signs a fresh list naming version 1 as the latest.
    from export.signing import sign_manifest

    index = json.loads((mirror / "v1" / "index.json").read_bytes())
    forged = {**index, "serial": index["serial"] + 1000, "latest": 1, "withdrawn": [2, 3],
              "manifests": {"1": index["manifests"]["1"]}}
    data = (json.dumps(forged) + "\n").encode()
    (mirror / "v1" / "index.json").write_bytes(data)
    (mirror / "v1" / "index.sig").write_bytes(sign_manifest(data, hub_root / "private" / "index.key"))
    with StaticMirror(mirror) as m:
        with pytest.raises(DowngradeError, match="older than version 3 this device already trusted"):
            client.sync(m.url)
    assert client.store.installed_versions() == [2, 3] and client.store.highest_trusted() == 3
    with HubProcess(hub_root) as hub:
        with pytest.raises(TrustError, match="older than serial"):  # the forged serial still binds ...
            client.sync(hub.url)
        # ... until the operator rotates the stolen index key (docs/HUB.md): a new root, new serials
        r = run_cli("hub", "delegate", "--root", hub_root, "--signing-key", keys[1].parent / "private.key", "--rotate")
        assert r.returncode == 0 and "root version 2" in r.stdout, r.stderr
        result = client.sync(hub.url)  # back to 3, from the copy already on the device
        assert result.version == 3 and result.downloaded_bytes < 5000


def test_plain_http_to_another_host_is_refused_and_the_token_never_leaves(tmp_path, keys):
    for url in ("http://192.0.2.10:8000", "http://hub.example.org", "http://10.0.0.1"):
        with pytest.raises(InsecureTransportError, match="refusing plain http"):
            EdgeClient(tmp_path / "phone").sync(url, public_key=keys[1])
        with pytest.raises(InsecureTransportError):
            UpdateQueue(tmp_path / "phone").upload(url, "dph_secret")
    for url in ("http://127.0.0.1:1", "http://localhost:8000", "http://[::1]:8000", "https://hub.example.org"):
        assert check_transport(url) == url
    assert check_transport("http://10.0.0.1:8000/", insecure_http=True) == "http://10.0.0.1:8000"
    for bad in ("ftp://127.0.0.1/", "http://user:pw@127.0.0.1/", "127.0.0.1:8000"):
        with pytest.raises(SyncError):
            check_transport(bad)
    r = run_cli("edge_client", "sync", "--server", "http://192.0.2.10:8000", "--key", keys[1], "--home", tmp_path / "p")
    assert r.returncode == 2 and "--insecure-http" in r.stderr and "Traceback" not in r.stderr


class _Redirector(http.server.BaseHTTPRequestHandler):
    target = ""
    seen: list = []

    def _answer(self) -> None:
        type(self).seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.headers.get("Content-Length"):
            self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(307)
        self.send_header("Location", self.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_redirects_are_never_followed(tmp_path):
    class Catcher(_Redirector):
        seen = []

    class Redirector(_Redirector):
        seen = []

    catcher, catcher_url = _serve(Catcher)
    Redirector.target = catcher_url
    redirector, url = _serve(Redirector)
    try:
        queue = UpdateQueue(tmp_path / "phone")
        update_id = queue.add(fake_update(1, seed=0), photos=10)
        queue.approve(update_id)
        report = queue.upload(url, "dph_secret")
        assert report.waiting == [update_id] and "not followed" in report.messages[0]
        with pytest.raises(NetworkError, match="not followed"):
            Fetcher(url).get_small("/v1/root.json", cap=1000)
        assert Catcher.seen == [] and Redirector.seen[0][2] == "Bearer dph_secret"  # the token went nowhere else
        queue.close()
    finally:
        for server in (catcher, redirector):
            server.shutdown()
            server.server_close()


_HOLDER = """
import sys, time, tempfile
from pathlib import Path
from edge_client.store import ModelStore
store = ModelStore(Path(sys.argv[1]))
with store.lock():
    store.models.mkdir(parents=True, exist_ok=True)
    tempfile.mkdtemp(dir=store.models, prefix=".7.")  # an install in progress
    print("held", flush=True)
    time.sleep(120)
"""


def test_one_lock_per_state_folder_across_processes(tmp_path, hub_root, keys, onnx_model):
    """The app installs while the CLI syncs and prunes: the CLI waits, then says so; nothing is deleted."""
    home = tmp_path / "phone"
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    holder = subprocess.Popen([PY, "-c", _HOLDER, str(home)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with HubProcess(hub_root) as hub:
            r = run_cli("edge_client", "sync", "--server", hub.url, "--key", keys[1], "--home", home)
        assert r.returncode == 2 and "another process" in r.stderr, r.stderr
        client = EdgeClient(home)
        client.store.lock_timeout = 0.5
        with pytest.raises(BusyError, match="another process"):
            client.store.prune()
        assert len(list(client.store.models.glob(".7.*"))) == 1  # the install in progress survived
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    client.store.prune()  # its owner is dead (the kernel released the lock): now a leftover, removed
    assert not list(client.store.models.glob(".7.*"))
