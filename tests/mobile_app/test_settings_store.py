"""Settings file: validated, atomic, a damaged file named in the error."""
import json

import pytest

from mobile_app.settings_store import Settings, SettingsError, SettingsStore, check_server_url



def test_round_trip(tmp_path):
    store = SettingsStore(tmp_path / "s.json")
    assert store.load() == Settings()
    saved = store.save(Settings(server_url=" http://127.0.0.1:8000/ ", language="fr", training_enabled=True))
    assert saved.server_url == "http://127.0.0.1:8000"
    assert store.load() == saved
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]      # no temp file left behind


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:8000", "http://", "https:///path"])
def test_bad_urls_are_refused(url):
    with pytest.raises(SettingsError, match="server address"):
        check_server_url(url)


def test_bad_runtime_and_damaged_file(tmp_path):
    store = SettingsStore(tmp_path / "s.json")
    with pytest.raises(SettingsError, match="runtime"):
        store.save(Settings(runtime="Bad Runtime!"))
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(SettingsError, match="s.json"):
        store.load()
    (tmp_path / "s.json").write_text(json.dumps({"training_enabled": "yes"}))
    with pytest.raises(SettingsError, match="training_enabled"):
        store.load()


def test_device_token_is_stored_privately_and_never_in_repr(tmp_path):
    store = SettingsStore(tmp_path / "s.json")
    saved = store.save(Settings(device_token="  tok_Secret-123  "))
    assert saved.device_token == "tok_Secret-123" and store.load().device_token == "tok_Secret-123"
    assert "tok_Secret" not in repr(saved)                         # a logged Settings does not leak it
    assert (tmp_path / "s.json").stat().st_mode & 0o777 == 0o600   # only the app can read the file
    with pytest.raises(SettingsError, match="device token"):
        store.save(Settings(device_token="two words"))
