"""Device-update attacks on a real hub over loopback HTTP (no torch): one token posing as many
devices, replays, revoked tokens, deep JSON, floods, a locked database, a public address without
TLS, and seeded bundles."""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
import requests
from tests.helpers.bundles import HubProcess, fake_update, init_hub, run_cli, write_bundle



@pytest.fixture()
def hub(tmp_path, keys, onnx_model):
    """A hub with version 1, two device tokens, min_updates 2."""
    root = init_hub(tmp_path / "hub", keys[1], "--min-updates", "2")
    write_bundle(tmp_path / "dist1", version=1, model_file=onnx_model, key=keys[0])
    assert run_cli("hub", "publish", tmp_path / "dist1", "--root", root).returncode == 0
    tokens = [run_cli("hub", "token", "issue", "--name", f"tablet-{i}", "--root", root).stdout.strip()
              for i in range(2)]
    with HubProcess(root) as process:
        yield root, process.url, tokens


def _post(url, token, payload, **headers):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return requests.post(url + "/v1/updates", data=body, headers={"Authorization": f"Bearer {token}", **headers},
                         timeout=30)


def _rows(root):
    db = sqlite3.connect(root / "registry.sqlite")
    try:
        return db.execute("SELECT token_id, status FROM updates ORDER BY id").fetchall()
    finally:
        db.close()


def test_one_token_cannot_pose_as_several_devices(hub):
    """The review's attack: one token posts the same update three times (and variants of it)."""
    root, url, tokens = hub
    update = fake_update(1, seed=1)
    first = _post(url, tokens[0], update)
    assert first.status_code == 202
    for _ in range(2):  # the same bytes again: the same upload (idempotent), never a second one
        again = _post(url, tokens[0], update)
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    replay = _post(url, tokens[0], {**update, "created": "2027-01-01T00:00:00Z"})
    assert replay.status_code == 409 and "replayed" in replay.json()["error"]
    assert _post(url, tokens[1], update).status_code == 409  # nor through another token
    poison = fake_update(1, seed=2)
    poison["delta_weight"] = [[999.0] * 512] * 5
    bad = _post(url, tokens[0], poison)
    assert bad.status_code == 422 and "norm" in bad.json()["error"]
    newer = _post(url, tokens[0], fake_update(1, seed=3))  # a new update replaces the token's pending one
    assert newer.status_code == 202 and "replaces" in newer.json()["status"]
    assert _rows(root) == [(1, "replaced"), (1, "pending")]
    time.sleep(1.0)
    assert not (root / "private" / "aggregate.log").exists()  # still one device: nothing is built
    assert _post(url, tokens[1], fake_update(1, seed=4)).status_code == 202
    for _ in range(100):  # two distinct devices: one aggregation starts (and fails: no private checkpoint)
        log = root / "private" / "aggregate.log"
        if log.exists() and "no private checkpoint" in log.read_text():
            break
        time.sleep(0.2)
    else:
        pytest.fail("no aggregation attempt after two devices")
    assert run_cli("hub", "pending", "--root", root).stdout.startswith("no candidate")


def test_revoking_a_token_drops_its_pending_updates(hub):
    root, url, tokens = hub
    assert _post(url, tokens[0], fake_update(1, seed=5)).status_code == 202
    r = run_cli("hub", "token", "revoke", "tablet-0", "--root", root)
    assert r.returncode == 0 and "dropped 1 pending" in r.stdout
    assert _rows(root) == [(1, "revoked")]
    assert _post(url, tokens[0], fake_update(1, seed=6)).status_code == 403


def test_bad_bodies_are_answered_not_crashed_on(hub):
    root, url, tokens = hub
    deep = _post(url, tokens[0], b"[" * 100_000 + b"]" * 100_000)
    assert deep.status_code == 400 and "nested too deeply" in deep.json()["error"]
    for field, value, words in [("delta", 1e-3, "below 1/N"), ("epsilon", 0.5, "below what its own"),
                                ("seeded", True, "seeded"), ("steps", 10_000, "steps"),
                                ("noise_multiplier", 1e5, "noise_multiplier")]:
        r = _post(url, tokens[0], {**fake_update(1, seed=7), field: value})
        assert r.status_code == 422 and words in r.json()["error"], (field, r.text)
    assert requests.get(url + "/healthz", timeout=5).status_code == 200


def test_a_flood_from_one_token_is_rate_limited(tmp_path, hub):
    root, url, tokens = hub
    assert run_cli("hub", "configure", "--root", root, "--rate-limit", "3").returncode == 0
    codes = [_post(url, tokens[0], fake_update(1, seed=100 + i)).status_code for i in range(5)]
    assert codes[:3] == [202, 202, 202] and codes[3:] == [429, 429]
    limited = _post(url, tokens[0], fake_update(1, seed=200))
    assert int(limited.headers["Retry-After"]) >= 1
    assert _post(url, tokens[1], fake_update(1, seed=201)).status_code == 202  # other devices are not affected


def test_a_locked_database_gives_503_and_healthz_keeps_answering(hub):
    root, url, tokens = hub
    db = sqlite3.connect(root / "registry.sqlite", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        result = {}
        thread = threading.Thread(target=lambda: result.update(r=_post(url, tokens[0], fake_update(1, seed=9))))
        thread.start()
        time.sleep(0.3)
        start = time.monotonic()
        assert requests.get(url + "/healthz", timeout=5).json()["latest"] == 1
        assert time.monotonic() - start < 1.5  # not frozen behind the writer
        thread.join(timeout=30)
        busy = result["r"]
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "2"
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert _post(url, tokens[0], fake_update(1, seed=9)).status_code == 202  # the device's retry is stored


def test_plain_http_on_a_public_address_is_refused(tmp_path, keys):
    root = init_hub(tmp_path / "hub", keys[1])
    r = run_cli("hub", "serve", "--root", root, "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert r.returncode == 2 and "refusing to serve plain HTTP on 0.0.0.0" in r.stderr
    with HubProcess(root, "--host", "0.0.0.0", "--insecure-http") as hub:
        assert requests.get(hub.url + "/healthz", timeout=5).status_code == 200
        hub.proc.kill()
        assert "WARNING: serving plain HTTP" in hub.proc.stderr.read()


def test_seeded_bundles_publish_only_as_test_builds(tmp_path, keys, onnx_model):
    root = init_hub(tmp_path / "hub", keys[1])
    dist = write_bundle(tmp_path / "seeded", version=1, model_file=onnx_model, key=keys[0])
    manifest = json.loads((dist / "manifest.json").read_bytes())
    manifest["privacy"]["seeded"] = True
    data = json.dumps(manifest, indent=2).encode()
    (dist / "manifest.json").write_bytes(data)
    import base64

    (dist / "manifest.sig").write_text(base64.b64encode(keys[0].sign(data).signature).decode() + "\n")
    r = run_cli("hub", "publish", dist, "--root", root)
    assert r.returncode == 2 and '"seeded": true' in r.stderr and "--allow-seeded" in r.stderr
    r = run_cli("hub", "publish", dist, "--root", root, "--allow-seeded")
    assert r.returncode == 0 and "no DP guarantee: test build" in r.stdout
    listing = run_cli("hub", "versions", "--root", root).stdout
    assert "no DP guarantee: test build" in listing and "ε =" not in listing
    with HubProcess(root) as hub:
        assert requests.get(hub.url + "/v1/versions", timeout=5).json()["versions"][0]["test_build"] is True
