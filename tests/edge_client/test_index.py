"""The signed model list, checked without any network (edge_client/trust_index.py), as an attacker
holding old signed documents, another key or a mirror would try it."""
from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from nacl.signing import SigningKey

from edge_client.manifest import ManifestError, is_safe_name, validate_manifest
from edge_client.trust_index import (IndexExpired, IndexRollback, IndexTrustError, VersionRefused, check_manifest,
                                     choose_target, format_time, freshness, verify_index, verify_root)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
PUBLISHER = SigningKey(b"\x02" * 32)
INDEX_KEY = SigningKey(b"\x03" * 32)
MANIFEST = b'{"model_version": 3}\n'


def _sign(key: SigningKey, doc: dict) -> tuple[bytes, bytes]:
    data = json.dumps(doc).encode()
    return data, base64.b64encode(key.sign(data).signature) + b"\n"


def _root(version=1, index_key=INDEX_KEY, signer=PUBLISHER):
    return _sign(signer, {"format": "dopamine-root", "format_version": 1, "version": version, "created": "x",
                          "index_key": base64.b64encode(bytes(index_key.verify_key)).decode()})


def _index(serial=10, *, latest=3, minimum=1, withdrawn=(), issued=NOW - timedelta(hours=1), ttl_h=24,
           manifests=None, signer=INDEX_KEY):
    manifests = manifests if manifests is not None else {"2": hashlib.sha256(b"two").hexdigest(),
                                                         "3": hashlib.sha256(MANIFEST).hexdigest()}
    return _sign(signer, {"format": "dopamine-index", "format_version": 1, "serial": serial,
                          "issued": format_time(issued), "expires": format_time(issued + timedelta(hours=ttl_h)),
                          "latest": latest, "minimum": minimum, "withdrawn": list(withdrawn), "manifests": manifests})


@pytest.fixture()
def root():
    return verify_root(*_root(), bytes(PUBLISHER.verify_key))


def test_a_good_list_verifies_and_names_the_target(root):
    index = verify_index(*_index(), root, now=NOW)
    assert index.latest == 3 and index.minimum == 1 and choose_target(index, highest_trusted=2) == 3
    check_manifest(index, 3, MANIFEST)
    assert freshness(index.issued, index.expires, NOW) == "fresh"
    assert freshness(index.issued, index.expires, NOW + timedelta(hours=12)) == "stale"
    assert freshness(index.issued, index.expires, NOW + timedelta(hours=23)) == "expired"


def test_signatures_from_other_keys_are_refused(root):
    other = SigningKey(b"\x09" * 32)
    with pytest.raises(IndexTrustError, match="signature does not verify"):
        verify_root(*_root(signer=other), bytes(PUBLISHER.verify_key))
    with pytest.raises(IndexTrustError, match="signature does not verify"):
        verify_index(*_index(signer=other), root, now=NOW)  # a mirror signing its own list
    with pytest.raises(IndexTrustError, match="signature does not verify"):
        verify_index(*_index(signer=PUBLISHER), root, now=NOW)  # even the publisher's key: not delegated


def test_an_expired_list_is_refused_however_it_is_signed(root):
    """An attacker replaying the current (genuine) list forever: the expiry ends it."""
    data, sig = _index(issued=NOW - timedelta(hours=25))
    with pytest.raises(IndexExpired, match="expired at"):
        verify_index(data, sig, root, now=NOW)


def test_an_older_or_forked_list_is_refused(root):
    """A mirror serving a list from before a withdrawal, though not yet expired."""
    with pytest.raises(IndexRollback, match="serial 9 is older than serial 10"):
        verify_index(*_index(serial=9), root, now=NOW, trusted_serial=10)
    data, sig = _index(serial=10, withdrawn=[2])
    with pytest.raises(IndexRollback, match="same serial"):
        verify_index(data, sig, root, now=NOW, trusted_serial=10, trusted_sha256="0" * 64)
    assert verify_index(data, sig, root, now=NOW, trusted_serial=10,
                        trusted_sha256=hashlib.sha256(data).hexdigest()).serial == 10


def test_an_older_root_cannot_bring_back_an_old_index_key():
    with pytest.raises(IndexRollback, match="root version 1 is older than version 2"):
        verify_root(*_root(version=1), bytes(PUBLISHER.verify_key), trusted_version=2)


def test_withdrawn_below_minimum_unlisted_and_swapped_manifests_are_refused(root):
    index = verify_index(*_index(latest=3, minimum=2, withdrawn=[4]), root, now=NOW)
    with pytest.raises(VersionRefused, match="withdrawn"):
        check_manifest(index, 4, MANIFEST)
    with pytest.raises(VersionRefused, match="below the minimum"):
        check_manifest(index, 1, MANIFEST)
    with pytest.raises(VersionRefused, match="not in the hub's signed model list"):
        check_manifest(index, 5, MANIFEST)
    with pytest.raises(IndexTrustError, match="not the one the signed model list names"):
        check_manifest(index, 3, b'{"model_version": 3, "evil": 1}\n')
    with pytest.raises(IndexTrustError, match="inconsistent"):  # a list naming a withdrawn latest
        verify_index(*_index(latest=3, withdrawn=[3]), root, now=NOW)


def test_below_the_highest_version_ever_trusted_is_a_downgrade(root):
    """After a rollback or a lost `current`, the device still remembers the highest version it trusted:
    even a list signed with a stolen index key cannot send it back."""
    index = verify_index(*_index(latest=2, manifests={"2": "a" * 64}), root, now=NOW)
    with pytest.raises(VersionRefused, match="older than version 3 this device already trusted"):
        choose_target(index, highest_trusted=3)
    assert choose_target(index, highest_trusted=None) == 2


def test_malformed_documents_name_the_field(root):
    data, sig = _sign(INDEX_KEY, {"format": "dopamine-index", "format_version": 1, "serial": 1, "issued": "yesterday",
                                  "expires": "x", "latest": 1, "minimum": 0, "withdrawn": [], "manifests": {}})
    with pytest.raises(IndexTrustError, match="field 'issued'"):
        verify_index(data, sig, root, now=NOW)
    deep = b"[" * 100_000 + b"]" * 100_000
    sig = base64.b64encode(INDEX_KEY.sign(deep).signature)
    with pytest.raises(IndexTrustError):
        verify_index(deep, sig, root, now=NOW)


def _manifest_with(name: str) -> dict:
    return {"schema_version": 1, "model_version": 1, "class_names": ["a", "b", "c", "d", "e"], "preprocess": {},
            "input_size": 32,
            "artifacts": [{"name": name, "sha256": "a" * 64, "size": 1, "runtime": "onnxruntime",
                           "inputs": [{"name": "x"}]}]}


@pytest.mark.parametrize("name", ["model.onnx\n", "manifest.json", "MANIFEST.JSON", "installed.json",
                                  "manifest.sig", "../x.onnx", ".hidden", "a/b.onnx"])
def test_newline_and_reserved_artifact_names_are_refused(name):
    """A name with a trailing newline passed `re.match(...$)`; `manifest.json` would overwrite the manifest."""
    assert not is_safe_name(name)
    with pytest.raises(ManifestError, match="not a plain, unique, non-reserved file name"):
        validate_manifest(_manifest_with(name))


def test_a_sha256_with_a_newline_is_refused():
    manifest = _manifest_with("model.onnx")
    manifest["artifacts"][0]["sha256"] = "a" * 64 + "\n"
    with pytest.raises(ManifestError, match="sha256 must be 64 lowercase hex"):
        validate_manifest(manifest)
    assert validate_manifest(_manifest_with("model.onnx"))
