"""Key files are written only where asked: a planted symlink never receives a private key."""
from __future__ import annotations

import os

import pytest
from tests.helpers.bundles import run_cli

from export import ExportError
from export.signing import generate_keypair, generate_private_key


def test_keygen_refuses_a_planted_symlink_at_the_key_path(tmp_path):
    keys, stolen = tmp_path / "keys", tmp_path / "attacker" / "stolen.key"
    keys.mkdir()
    stolen.parent.mkdir()
    os.symlink(stolen, keys / "private.key")  # dangling: exists() would say False
    r = run_cli("export", "keygen", "--out", keys)
    assert r.returncode == 2 and "refusing" in r.stderr and "Traceback" not in r.stderr
    assert not stolen.exists()
    with pytest.raises(ExportError):
        generate_keypair(keys, overwrite=False)
    assert not stolen.exists()


def test_keygen_overwrite_replaces_the_link_never_its_target(tmp_path):
    keys, victim = tmp_path / "keys", tmp_path / "victim.txt"
    keys.mkdir()
    victim.write_text("precious")
    os.symlink(victim, keys / "private.key")
    generate_keypair(keys, overwrite=True)
    assert victim.read_text() == "precious"
    assert not (keys / "private.key").is_symlink()
    assert (keys / "private.key").stat().st_mode & 0o777 == 0o600


def test_a_symlinked_key_folder_and_an_existing_index_key_are_refused(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    os.symlink(real, tmp_path / "link")
    with pytest.raises(ExportError, match="symbolic link"):
        generate_keypair(tmp_path / "link")
    generate_private_key(tmp_path / "index.key")
    with pytest.raises(ExportError, match="already exists"):
        generate_private_key(tmp_path / "index.key")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
