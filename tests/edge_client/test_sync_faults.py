"""Sync against the real hub on loopback: the happy path and every fault the clinic may meet.

Each fault must leave the last good model active, explain itself in one line, and keep
diagnosis working offline.
"""
from __future__ import annotations

import json
import resource
import threading

import pytest
from tests.helpers.bundles import HubProcess, init_hub, make_keys, run_cli, write_bundle
from tests.helpers.photos import fundus_photos, png_bytes

from edge_client.api import EdgeClient
from edge_client.errors import DowngradeError, IntegrityError, NetworkError, TrustError



@pytest.fixture()
def hub_root(tmp_path, keys, onnx_model):
    sk, pub = keys
    return init_hub(tmp_path / "hub", pub)


def publish(tmp_path, root, keys, onnx_model, version):
    write_bundle(tmp_path / f"dist{version}", version=version, model_file=onnx_model, key=keys[0])
    r = run_cli("hub", "publish", tmp_path / f"dist{version}", "--root", root)
    assert r.returncode == 0, r.stderr


@pytest.fixture()
def photo(tmp_path):
    path = tmp_path / "fundus.png"
    path.write_bytes(png_bytes(fundus_photos(1, size=128, seed=11)[0]))
    return path


def test_end_to_end_cli_sync_diagnose_history_offline(tmp_path, hub_root, keys, onnx_model, photo):
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    home = tmp_path / "phone"
    with HubProcess(hub_root) as hub:
        r = run_cli("edge_client", "sync", "--server", hub.url, "--key", keys[1], "--home", home)
        assert r.returncode == 0 and "installed model version 1" in r.stdout, r.stderr
        r = run_cli("edge_client", "sync", "--server", hub.url, "--home", home)
        assert r.returncode == 0 and "up to date" in r.stdout
    # hub gone: diagnosis works offline
    r = run_cli("edge_client", "diagnose", photo, "--json", env={"EDGE_HOME": str(home)})
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert 0 <= result["grade"] <= 4 and abs(sum(result["probabilities"]) - 1) < 1e-5
    assert result["model_version"] == 1 and result["epsilon"] == 9.8 and result["delta"] == 1e-05
    assert result["refer"] == (result["decision"] != "no_referral")
    assert abs(result["p_referable"] - sum(result["probabilities"][2:])) < 1e-9  # no threshold: default 0.2
    assert result["decision"] == ("no_referral" if result["p_referable"] < 0.2 else
                                  "uncertain_refer" if result["p_referable"] < 0.5 else "refer")
    assert result["card"]["version"] == 1 and not result["card"]["validated"]
    r = run_cli("edge_client", "history", "--home", home)
    assert r.returncode == 0 and result["image_sha256"][:16] in r.stdout
    r = run_cli("edge_client", "history", "--csv", tmp_path / "h.csv", "--home", home)
    assert (tmp_path / "h.csv").read_text().count("\n") == 2
    assert not (home / "photos").exists()  # photos are not copied unless asked
    r = run_cli("edge_client", "sync", "--server", hub.url, "--home", home)  # no network at all
    assert r.returncode == 2 and "cannot reach the hub" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    r = run_cli("edge_client", "diagnose", bad, "--home", home)
    assert r.returncode == 2 and "bad.png" in r.stderr and "Traceback" not in r.stderr


def test_second_sync_downloads_nothing_and_keys_are_pinned(tmp_path, hub_root, keys, onnx_model):
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    client = EdgeClient(tmp_path / "phone")
    other_sk, other_pub = make_keys(tmp_path / "other")
    with HubProcess(hub_root) as hub:
        with pytest.raises(TrustError, match="no publisher key pinned"):
            client.sync(hub.url)
        with pytest.raises(TrustError, match="signature does not verify"):  # wrong key given first
            client.sync(hub.url, public_key=other_pub)
        assert client.store.pinned_key() is None  # nothing pinned from a failed check
        first = client.sync(hub.url, public_key=keys[1])
        assert first.updated and first.version == 1
        again = client.sync(hub.url)
        assert not again.updated and again.downloaded_bytes < 2000  # only the signed model list
        with pytest.raises(TrustError, match="differs from the key pinned"):
            client.sync(hub.url, public_key=other_pub)
        # the hub's files now hold a version 1 manifest signed by another key: the signed model
        # list names the real manifest's sha256, so a new device refuses it before any signature check
        write_bundle(tmp_path / "evil", version=1, model_file=onnx_model, key=other_sk, name="evil.onnx")
        vdir = hub_root / "versions" / "1"
        for name in ("manifest.json", "manifest.sig"):
            (vdir / name).write_bytes((tmp_path / "evil" / name).read_bytes())
        assert not client.sync(hub.url).updated  # the device already has the listed manifest
        with pytest.raises(TrustError, match="not the one the signed model list names"):
            EdgeClient(tmp_path / "phone2").sync(hub.url, public_key=keys[1])
    assert client.installed_model().version == 1


def test_tampered_and_truncated_artifacts_then_resume(tmp_path, hub_root, keys, onnx_model):
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    client = EdgeClient(tmp_path / "phone")
    with HubProcess(hub_root) as hub:
        client.sync(hub.url, public_key=keys[1])
        publish(tmp_path, hub_root, keys, onnx_model, 2)
        served = hub_root / "versions" / "2" / "model_fp32.onnx"
        good = served.read_bytes()
        served.write_bytes(good[:1000] + bytes([good[1000] ^ 0xFF]) + good[1001:])  # tampered
        with pytest.raises(IntegrityError, match="does not match its signed sha256"):
            client.sync(hub.url)
        assert client.store.current_version() == 1 and not list((client.home / "partial").glob("*"))
        served.write_bytes(good[: len(good) // 2])  # truncated on the hub
        with pytest.raises(NetworkError, match=f"the hub sent {len(good) // 2} of {len(good)} bytes|range refused"):
            client.sync(hub.url)
        assert client.store.current_version() == 1
        served.write_bytes(good)  # repaired on the hub: the next sync installs it
        result = client.sync(hub.url)
        assert result.updated and result.version == 2
        assert client.store.installed_versions() == [1, 2]  # previous kept for rollback
        assert client.rollback() == 1 and client.installed_model().version == 1
        client.store.set_current(2)


def test_hub_dies_mid_download_then_resumes_and_cancel(tmp_path, hub_root, keys, onnx_model):
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    size = onnx_model.stat().st_size
    client = EdgeClient(tmp_path / "phone")
    hub = HubProcess(hub_root, "--throttle-bytes-per-s", str(size // 4))
    seen = []
    try:
        def progress(done, total):
            seen.append(done)
            if done > total // 3 and hub.proc.poll() is None:
                hub.proc.kill()  # the hub dies mid-download

        with pytest.raises(NetworkError, match="kept for resume"):
            client.sync(hub.url, public_key=keys[1], progress=progress)
    finally:
        hub.stop()
    assert client.installed_model() is None
    kept = next((client.home / "partial").glob("*.part")).stat().st_size
    assert size // 3 < kept < size
    hub = HubProcess(hub_root, "--throttle-bytes-per-s", str(size))
    try:
        cancel = threading.Event()
        result = client.sync(hub.url, progress=lambda d, t: d > kept + 100_000 and cancel.set(), cancel=cancel)
        assert result.cancelled and not result.updated
        kept2 = next((client.home / "partial").glob("*.part")).stat().st_size
        assert kept2 > kept
        result = client.sync(hub.url)
        assert result.updated and result.downloaded_bytes < size - kept2 + 20_000
    finally:
        hub.stop()


def test_downgrade_refused_and_corrupt_local_model_falls_back(tmp_path, hub_root, keys, onnx_model, photo):
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    client = EdgeClient(tmp_path / "phone")
    with HubProcess(hub_root) as hub:
        client.sync(hub.url, public_key=keys[1])
        publish(tmp_path, hub_root, keys, onnx_model, 2)
        assert client.sync(hub.url).version == 2
        # the device's copy of version 2 gets corrupted: diagnosis falls back to version 1
        art = client.home / "models" / "2" / "model_fp32.onnx"
        art.write_bytes(art.read_bytes()[:-50])
        d = client.diagnose(photo)
        assert d.model_version == 1 and "switched back to model version 1" in client.notice
        assert client.sync(hub.url).version == 2  # sync repairs it
        assert client.diagnose(photo).model_version == 2
        assert run_cli("hub", "withdraw", "2", "--root", hub_root).returncode == 0
        with pytest.raises(DowngradeError, match="older than version 2 this device already trusted"):
            client.sync(hub.url)
    assert client.installed_model().version == 2


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_full_disk_keeps_the_old_model(tmp_path, hub_root, keys, onnx_model, photo):
    """A real file-size limit (RLIMIT_FSIZE) in the sync subprocess, not a mock."""
    publish(tmp_path, hub_root, keys, onnx_model, 1)
    home = tmp_path / "phone"
    with HubProcess(hub_root) as hub:
        assert run_cli("edge_client", "sync", "--server", hub.url, "--key", keys[1], "--home", home).returncode == 0
        publish(tmp_path, hub_root, keys, onnx_model, 2)
        r = run_cli("edge_client", "sync", "--server", hub.url, "--home", home, "--quiet",
                    preexec_fn=_limit_file_size)
        assert r.returncode == 2 and "not enough storage" in r.stderr and "Traceback" not in r.stderr
        assert (home / "current").read_text().strip() == "1"
        assert not list((home / "partial").glob("*.part"))  # the space is given back
    r = run_cli("edge_client", "diagnose", photo, "--json", "--home", home)
    assert r.returncode == 0 and json.loads(r.stdout)["model_version"] == 1
