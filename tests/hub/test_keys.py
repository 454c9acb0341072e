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


def test_a_signing_key_that_is_not_the_publishers_is_refused_naming_it(tmp_path):
    """`hub init --signing-key` and `hub delegate` refuse another key (devices would refuse what it
    signs) and a file that is no key; nothing is installed or delegated."""
    publisher, other = generate_keypair(tmp_path / "publisher"), generate_keypair(tmp_path / "other")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    hub = tmp_path / "hub"
    for wrong, says in ((other[0], "not the private half of this hub's publisher key"), (junk, str(junk))):
        r = run_cli("hub", "init", "--root", hub, "--publisher-key", publisher[1], "--signing-key", wrong)
        assert r.returncode != 0 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not hub.exists()            # refused before the hub folder is made
    r = run_cli("hub", "init", "--root", hub, "--publisher-key", publisher[1])
    assert r.returncode == 0, r.stderr
    r = run_cli("hub", "delegate", "--root", hub, "--signing-key", other[0])
    assert r.returncode != 0 and "not the private half" in r.stderr and str(other[0]) in r.stderr, r.stderr
    r = run_cli("hub", "delegate", "--root", hub, "--signing-key", publisher[0])
    assert r.returncode == 0, r.stderr
