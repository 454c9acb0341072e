"""The hub against real HTTP on loopback: publish checks, manifest/artifact serving, tokens, limits."""
from __future__ import annotations

import hashlib
import http.client
import json
from urllib.parse import urlsplit

import pytest
import requests
from tests.helpers.bundles import HubProcess, make_keys, run_cli, write_bundle

from hub.ranges import parse_range



@pytest.fixture()
def hub_root(tmp_path, keys):
    _sk, pub = keys
    root = tmp_path / "hub"
    r = run_cli("hub", "init", "--root", root, "--publisher-key", pub)
    assert r.returncode == 0, r.stderr
    return root


def test_parse_range_cases():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-", 10) == (2, 9)
    assert parse_range("bytes=2-4", 10) == (2, 4)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=0-100", 10) == (0, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=1-2,4-5", 10) is None
    assert parse_range("items=1-2", 10) is None


def test_publish_refuses_bad_bundles(tmp_path, hub_root, keys, onnx_model):
    sk, _ = keys
    good = write_bundle(tmp_path / "v1", version=1, model_file=onnx_model, key=sk)
    assert run_cli("hub", "publish", good, "--root", hub_root).returncode == 0
    # same version again, and a lower one: refused
    r = run_cli("hub", "publish", good, "--root", hub_root)
    assert r.returncode == 2 and "not above the latest" in r.stderr and "Traceback" not in r.stderr
    # signed by another key
    other, _ = make_keys(tmp_path / "other")
    bad = write_bundle(tmp_path / "v2other", version=2, model_file=onnx_model, key=other)
    r = run_cli("hub", "publish", bad, "--root", hub_root)
    assert r.returncode == 2 and "signature does not verify" in r.stderr
    # tampered artifact (same size)
    tam = write_bundle(tmp_path / "v2tam", version=2, model_file=onnx_model, key=sk)
    blob = bytearray((tam / "model_fp32.onnx").read_bytes())
    blob[-10] ^= 0xFF
    (tam / "model_fp32.onnx").write_bytes(bytes(blob))
    r = run_cli("hub", "publish", tam, "--root", hub_root)
    assert r.returncode == 2 and "sha256 does not match" in r.stderr
    versions = run_cli("hub", "versions", "--root", hub_root).stdout
    assert "      1  active" in versions and "      2" not in versions
    assert not any(p.name.startswith(".") for p in (hub_root / "versions").iterdir())


def test_serving_etag_range_withdraw_tokens_limits(tmp_path, hub_root, keys, onnx_model):
    sk, _ = keys
    for v in (1, 2):
        write_bundle(tmp_path / f"v{v}", version=v, model_file=onnx_model, key=sk)
        assert run_cli("hub", "publish", tmp_path / f"v{v}", "--root", hub_root).returncode == 0
    blob = onnx_model.read_bytes()
    with HubProcess(hub_root) as hub:
        u = hub.url
        r = requests.get(u + "/v1/manifest")
        assert r.status_code == 200 and r.headers["X-Model-Version"] == "2"
        assert r.content == (tmp_path / "v2" / "manifest.json").read_bytes()  # exact signed bytes
        assert requests.get(u + "/v1/manifest", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
        assert requests.get(u + "/v1/manifest.sig").text == (tmp_path / "v2" / "manifest.sig").read_text()

        art = u + "/v1/artifacts/2/model_fp32.onnx"
        full = requests.get(art)
        etag = full.headers["ETag"]
        assert full.content == blob and etag == f'"{hashlib.sha256(blob).hexdigest()}"'
        assert requests.get(art, headers={"If-None-Match": etag}).status_code == 304
        part = requests.get(art, headers={"Range": "bytes=100-"})
        assert part.status_code == 206 and part.content == blob[100:]
        assert part.headers["Content-Range"] == f"bytes 100-{len(blob) - 1}/{len(blob)}"
        # If-Range with another ETag: the whole file, not a piece of the wrong one
        assert requests.get(art, headers={"Range": "bytes=100-", "If-Range": '"x"'}).status_code == 200
        assert requests.get(art, headers={"Range": f"bytes={len(blob)}-"}).status_code == 416
        assert requests.get(u + "/v1/artifacts/2/missing.onnx").status_code == 404

        # withdraw 2: version 1 is offered again, 2's files are gone
        assert run_cli("hub", "withdraw", "2", "--root", hub_root).returncode == 0
        assert requests.get(u + "/v1/manifest").headers["X-Model-Version"] == "1"
        assert requests.get(art).status_code == 410
        assert requests.get(u + "/v1/versions/2/manifest").status_code == 410
        assert [v["version"] for v in requests.get(u + "/v1/versions").json()["versions"]] == [1]

        # path traversal, raw (requests would normalise "..")
        host = urlsplit(u)
        for path in ("/v1/artifacts/1/..%2F..%2Fregistry.sqlite", "/v1/artifacts/1/../../registry.sqlite",
                     "/v1/artifacts/1/.hidden", "/v1/artifacts/1/manifest.json"):
            conn = http.client.HTTPConnection(host.hostname, host.port, timeout=5)
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert resp.status in (400, 404), (path, resp.status)
            assert b"SQLite" not in body

        # upload tokens: missing, wrong, valid, revoked; oversized body; long URL
        up = u + "/v1/updates"
        assert requests.post(up, data=b"x").status_code == 401
        assert requests.post(up, data=b"x", headers={"Authorization": "Bearer nope"}).status_code == 401
        token = run_cli("hub", "token", "issue", "--name", "tablet-7", "--root", hub_root).stdout.strip()
        assert token.startswith("dph_")
        bad = requests.post(up, data=b"update-bytes", headers={"Authorization": f"Bearer {token}"})
        assert bad.status_code == 400 and "JSON" in bad.json()["error"]  # checked: tests/hub/test_device_updates.py
        big = requests.post(up, data=b"0" * (16 * 1024 * 1024 + 1), headers={"Authorization": f"Bearer {token}"})
        assert big.status_code == 413
        assert requests.get(u + "/v1/manifest?" + "a" * 5000).status_code == 414
        listing = run_cli("hub", "token", "list", "--root", hub_root).stdout
        assert "tablet-7" in listing and token not in listing
        assert token not in (hub_root / "registry.sqlite").read_bytes().decode("latin-1")  # hash only
        assert run_cli("hub", "token", "revoke", "tablet-7", "--root", hub_root).returncode == 0
        assert requests.post(up, data=b"x", headers={"Authorization": f"Bearer {token}"}).status_code == 403
        assert requests.get(u + "/healthz").json() == {"status": "ok", "latest": 1}


def test_tls_serving(tmp_path, hub_root, keys, onnx_model):
    """--tls-cert/--tls-key: HTTPS with a self-signed certificate (openssl CLI)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    sk, _ = keys
    write_bundle(tmp_path / "v1", version=1, model_file=onnx_model, key=sk)
    assert run_cli("hub", "publish", tmp_path / "v1", "--root", hub_root).returncode == 0
    with HubProcess(hub_root, "--tls-cert", str(cert), "--tls-key", str(key)) as hub:
        assert hub.url.startswith("https://")
        r = requests.get(hub.url + "/v1/manifest", verify=str(cert))
        assert r.status_code == 200 and json.loads(r.content)["model_version"] == 1
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(hub.url + "/v1/manifest")  # not trusted without the CA


def test_cli_errors_are_one_line(tmp_path):
    r = run_cli("hub", "publish", tmp_path / "nope", "--root", tmp_path / "missing")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "does not exist" in r.stderr
