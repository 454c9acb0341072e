"""Translation tables: every key in every language, with the same {placeholders}."""
import json
import re

import pytest

from mobile_app.i18n import REFERENCE, TRANSLATIONS_DIR, languages, placeholders, table, translate

pytestmark = pytest.mark.timeout(60)


def test_at_least_two_languages():
    assert languages()[0] == "en"
    assert {"fr", "sw"} <= set(languages())


@pytest.mark.parametrize("lang", [lang for lang in languages() if lang != REFERENCE])
def test_same_keys_and_placeholders_as_english(lang):
    en, other = table(REFERENCE), table(lang)
    assert set(other) - set(en) == set(), "keys English does not have"
    assert set(en) - set(other) == set(), "keys missing from this language"
    for key, text in en.items():
        assert placeholders(other[key]) == placeholders(text), key
        assert other[key].strip(), key


def test_every_key_used_in_the_app_exists():
    """Keys written literally in the app's .py/.kv files (tr("...") / app.tr("...")) are all in the table."""
    src = TRANSLATIONS_DIR.parent
    used = set()
    for path in list(src.rglob("*.py")) + list(src.rglob("*.kv")):
        used |= set(re.findall(r'tr\(\s*"([a-z_]+\.[a-z_0-9]+)"', path.read_text(encoding="utf-8")))
    used |= {f"grade.{i}" for i in range(5)} | {f"nav.{n}" for n in ("home", "diagnose", "history", "train", "settings")}
    used |= {f"{kind}.{r}" for kind in ("quality", "hint") for r in ("too_dark", "too_bright", "no_fundus", "blurry")}
    used |= {f"train.stage_{s}" for s in ("features", "training")}     # keys the Train screen builds
    used |= {f"train.status_{s}" for s in ("bad_labels", "no_model", "budget", "unreadable", "failed")}
    used |= {f"train.update_{s}" for s in ("pending", "approved", "uploaded", "rejected")}
    used |= {f"train.upload_{s}" for s in ("uploaded", "nothing", "offline", "token", "partial", "no_server",
                                           "no_token")}
    assert len(used) > 40
    assert used - set(table(REFERENCE)) == set()


def test_translate_formats_and_falls_back():
    assert translate("home.version", "fr", version=3) == "Version 3"
    assert translate("diagnose.result", "sw", grade="X") == "Matokeo: X"
    assert translate("no.such.key", "fr") == "no.such.key"
    assert translate("nav.home", "xx") == "Home"


def test_tables_are_valid_utf8_json():
    for path in TRANSLATIONS_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
