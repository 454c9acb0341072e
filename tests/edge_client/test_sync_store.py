"""The device store on its own: the Core ML zip unpacked atomically and re-verified at install,
unsafe zips refused, the trust record failing closed, the model-list status the app shows."""
from __future__ import annotations

import base64
import hashlib
import json
import stat
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from nacl.signing import SigningKey

from edge_client.errors import CorruptModelError, IntegrityError, TrustError
from edge_client.store import ModelStore
from edge_client.trust_index import TrustIndex

KEY = SigningKey(b"\x05" * 32)
NAME = "model_int8.mlpackage.zip"
TOP = "model_int8.mlpackage"


def _zip(path, entries: dict[str, bytes], links: dict[str, str] | None = None):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def _install(tmp_path, archive):
    store = ModelStore(tmp_path / "phone")
    store.pin_key(bytes(KEY.verify_key))
    data = archive.read_bytes()
    artifact = {"name": NAME, "format": "mlpackage", "runtime": "coreml", "precision": "int8",
                "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "inputs": [{"name": "x"}]}
    manifest = {"schema_version": 1, "model_version": 4, "class_names": ["a", "b", "c", "d", "e"], "preprocess": {},
                "input_size": 32, "artifacts": [artifact]}
    raw = json.dumps(manifest).encode()
    sig = base64.b64encode(KEY.sign(raw).signature) + b"\n"
    download = store.partial_path(artifact["sha256"])
    download.write_bytes(data)
    store.install(raw, sig, manifest, artifact, download)
    return store


def test_the_core_ml_zip_is_unpacked_at_install_and_re_verified(tmp_path):
    archive = _zip(tmp_path / NAME, {f"{TOP}/Manifest.json": b"{}", f"{TOP}/Data/weights.bin": b"\x01" * 1000})
    store = _install(tmp_path, archive)
    folder = store.models / "4"
    assert (folder / TOP / "Data" / "weights.bin").read_bytes() == b"\x01" * 1000  # the runtime finds it unpacked
    assert store.load(4).artifact["name"] == NAME
    (folder / TOP / "Data" / "weights.bin").write_bytes(b"\x02" * 1000)  # changed on the device
    with pytest.raises(CorruptModelError, match="unpacked model file changed"):
        store.load(4)


@pytest.mark.parametrize("entries,links", [
    ({f"{TOP}/../../evil.txt": b"x"}, None),
    ({"../evil.txt": b"x"}, None),
    ({"/etc/evil": b"x"}, None),
    ({"other/evil.txt": b"x"}, None),                # outside the package folder
    ({f"{TOP}/Manifest.json": b"{}"}, {f"{TOP}/link": "/etc/passwd"}),
])
def test_unsafe_zips_are_refused_and_nothing_is_installed(tmp_path, entries, links):
    archive = _zip(tmp_path / NAME, entries, links)
    with pytest.raises(IntegrityError, match="unsafe entry"):
        _install(tmp_path, archive)
    store = ModelStore(tmp_path / "phone")
    assert store.installed_versions() == [] and not list(store.models.glob(".*"))
    assert not (tmp_path / "evil.txt").exists()


def test_a_damaged_trust_record_fails_closed(tmp_path):
    store = ModelStore(tmp_path / "phone")
    store.record_trusted_version(5)
    store.record_trusted_version(3)  # never lowered
    assert store.highest_trusted() == 5
    (store.trust / "state.json").write_text("{not json")
    with pytest.raises(TrustError, match="trust record is damaged"):
        store.highest_trusted()


def test_the_model_list_status_for_the_app(tmp_path):
    store = ModelStore(tmp_path / "phone")
    assert store.index_status().state == "none"
    now = datetime(2026, 11, 28, tzinfo=timezone.utc)
    index = TrustIndex(serial=3, issued=now, expires=now + timedelta(days=1), latest=2, minimum=2,
                       withdrawn=frozenset({1}), sha256="a" * 64)
    store.record_index(index, b"{}", b"sig", now=now)
    store.set_current(1)
    status = store.index_status(now + timedelta(hours=1))
    assert status.state == "fresh" and status.expires == "2026-11-29T00:00:00Z"
    assert status.current_withdrawn and "withdrawn by the publisher" in status.message
    assert store.index_status(now + timedelta(hours=13)).state == "stale"
    expired = store.index_status(now + timedelta(days=2))
    assert expired.state == "expired" and "expired on 2026-11-29T00:00:00Z" in expired.message
