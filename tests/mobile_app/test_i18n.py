"""Translation tables: every key in every language, with the same {placeholders}."""
import json
import re

import pytest

from mobile_app.i18n import REFERENCE, TRANSLATIONS_DIR, languages, placeholders, table, translate



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
    """Keys written literally in the app's .py/.kv files (tr("...") / app.tr("...")), and the ones
    screens build from codes, are all in the table."""
    from mobile_app.home_state import home_banners
    from mobile_app.result_view import DECISIONS
    from mobile_app.user_errors import SYNC_ERROR_KEYS

    src = TRANSLATIONS_DIR.parent
    used = set()
    for path in list(src.rglob("*.py")) + list(src.rglob("*.kv")):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'tr\(\s*"([a-z_]+\.[a-z_0-9]+)"', text))
        used |= set(re.findall(r'"((?:card|result|key|banner|error|decision)\.[a-z_0-9]+)"', text))
    used |= {f"grade.{i}" for i in range(5)} | {f"nav.{n}" for n in ("home", "diagnose", "history", "train", "settings")}
    codes = ("too_dark", "too_bright", "no_fundus", "blurry",                  # the quality gate's reasons today
             "blank", "grayscale", "red_free", "not_fundus", "out_of_distribution", "ungradable")  # and issue 14's
    used |= {f"{kind}.{r}" for kind in ("quality", "hint") for r in codes}
    used |= {f"train.stage_{s}" for s in ("features", "training")}     # keys the Train screen builds
    used |= {f"train.status_{s}" for s in ("bad_labels", "no_model", "budget", "unreadable", "failed")}
    used |= {f"train.update_{s}" for s in ("pending", "approved", "uploaded", "rejected")}
    used |= {f"train.upload_{s}" for s in ("uploaded", "nothing", "offline", "token", "partial", "no_server",
                                           "no_token")}
    used |= {f"decision.{d}" for d in DECISIONS} | {f"history.{d}" for d in DECISIONS} | set(SYNC_ERROR_KEYS)
    used |= {f"key.source_{s}" for s in ("pinned", "entered", "bundled", "none")}
    used |= {f"{k}_{e}" for k in ("result.eye", "history.eye", "diagnose.eye") for e in ("left", "right")}
    for kw in [dict(installed=None, server_set=False, online=False), dict(installed=None, server_set=True, online=False),
               dict(installed=None, server_set=True, online=True), dict(installed=1, server_set=True, online=False),
               dict(installed=1, server_set=True, online=True, offered=2), dict(installed=1, server_set=True, online=True)]:
        used |= {b.key for b in home_banners(index_stale=True, **{"offered": None, **kw})}
    used = {k for k in used if not k.endswith("_")}          # prefixes of keys built in code ("key.source_" + ...)
    assert len(used) > 150
    assert used - set(table(REFERENCE)) == set()


def test_no_unused_keys():
    """Every key in the table is used somewhere (so the translators' work is not wasted)."""
    src = TRANSLATIONS_DIR.parent
    code = "".join(p.read_text(encoding="utf-8") for p in list(src.rglob("*.py")) + list(src.rglob("*.kv")))
    built = ("grade.", "nav.", "quality.", "hint.", "train.stage_", "train.status_", "train.update_", "train.upload_",
             "decision.", "history.", "error.", "key.source_", "banner.", "result.eye_", "diagnose.eye_")
    unused = [k for k in table(REFERENCE) if f'"{k}"' not in code and not k.startswith(built)]
    assert unused == []


def test_translate_formats_and_falls_back():
    assert translate("home.version", "fr", version=3) == "Version 3"
    assert translate("result.patient", "sw", patient="X") == "Mgonjwa: X"
    assert translate("no.such.key", "fr") == "no.such.key"
    assert translate("nav.home", "xx") == "Home"


def test_tables_are_valid_utf8_json():
    for path in TRANSLATIONS_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
