"""The publisher key built into the app, pasted or scanned: the build step, parsing, fingerprints,
and which key a sync trusts."""
import base64
import json
import subprocess
import sys

import pytest

from mobile_app.provision import (KeyChoice, PublisherKeyError, choose_key, encode_key, fingerprint, parse_key,
                                  read_bundled, write_bundled)

RAW = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_parse_accepts_what_people_paste_and_qr_codes_hold():
    text = encode_key(RAW)
    assert parse_key(text) == RAW
    assert parse_key(f"  {text[:20]}\n {text[20:]}\n") == RAW         # a wrapped paste
    assert parse_key("dopamine-publisher-key:" + text) == RAW          # an optional QR prefix


@pytest.mark.parametrize("text,match", [("", "empty"), ("not base64!", "not base64"),
                                        (base64.b64encode(b"x" * 31).decode(), "31 bytes")])
def test_parse_refuses_what_is_not_a_key(text, match):
    with pytest.raises(PublisherKeyError, match=match):
        parse_key(text)


def test_fingerprint_is_stable_and_distinguishes_keys():
    fp = fingerprint(RAW)
    assert fp == fingerprint(RAW) and fp != fingerprint(OTHER)
    assert len(fp) == 19 and fp.count(" ") == 3 and fp.replace(" ", "").isalnum()


def test_build_step_writes_the_key_into_the_app(tmp_path):
    (tmp_path / "public.key").write_text(encode_key(RAW) + "\n")
    out = tmp_path / "publisher_key.json"
    r = subprocess.run([sys.executable, "-m", "mobile_app.provision", "--key", str(tmp_path / "public.key"),
                        "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert fingerprint(RAW) in r.stdout
    assert read_bundled(out) == RAW
    assert json.loads(out.read_text())["fingerprint"] == fingerprint(RAW)


def test_build_step_refuses_a_bad_key_file_and_writes_nothing(tmp_path):
    (tmp_path / "public.key").write_text("hello\n")
    out = tmp_path / "publisher_key.json"
    r = subprocess.run([sys.executable, "-m", "mobile_app.provision", "--key", str(tmp_path / "public.key"),
                        "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "public.key is not base64" in r.stderr and not out.exists()
    r = subprocess.run([sys.executable, "-m", "mobile_app.provision", "--key", str(tmp_path / "missing.key")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "missing.key: cannot read" in r.stderr


def test_a_damaged_builtin_key_is_named_not_trusted(tmp_path):
    path = write_bundled(RAW, tmp_path / "k.json")
    body = json.loads(path.read_text())
    body["public_key"] = encode_key(OTHER)                 # the key changed, the fingerprint did not
    path.write_text(json.dumps(body))
    with pytest.raises(PublisherKeyError, match="fingerprint does not match"):
        read_bundled(path)
    assert read_bundled(tmp_path / "absent.json") is None  # a build without a key: none, no error


def test_the_pinned_key_wins_then_the_entered_one_then_the_builtin_one():
    assert choose_key(pinned=RAW, entered=encode_key(OTHER), bundled=OTHER) == KeyChoice(RAW, "pinned")
    assert choose_key(pinned=None, entered=encode_key(OTHER), bundled=RAW) == KeyChoice(OTHER, "entered")
    assert choose_key(pinned=None, entered="", bundled=RAW).source == "bundled"
    assert choose_key(pinned=None, entered="", bundled=None) == KeyChoice(None, "none")
