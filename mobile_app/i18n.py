"""Translation tables: one JSON file per language in `translations/`, English is the reference.

Pure Python (no Kivy), so the "every key exists in every language" test runs without a window.
Screens call `app.tr("key", app.lang)`: naming `app.lang` in the kv rule makes Kivy re-evaluate
the text when the language changes.
"""
from __future__ import annotations

import json
import string
from functools import lru_cache
from pathlib import Path

TRANSLATIONS_DIR = Path(__file__).with_name("translations")
REFERENCE = "en"
LANGUAGE_NAMES = {"en": "English", "fr": "Français", "sw": "Kiswahili"}


class TranslationError(ValueError):
    """A translation table is missing, unreadable or inconsistent."""


def languages() -> list[str]:
    """Codes of the languages that have a table, English first."""
    codes = sorted(p.stem for p in TRANSLATIONS_DIR.glob("*.json"))
    return sorted(codes, key=lambda c: (c != REFERENCE, c))


@lru_cache(maxsize=None)
def table(lang: str) -> dict[str, str]:
    """The key -> text table of one language.

    Raises:
        TranslationError: unknown language or a file that is not a flat JSON object of strings.
    """
    path = TRANSLATIONS_DIR / f"{lang}.json"
    if not path.is_file():
        raise TranslationError(f"no translation table for language {lang!r}; have {languages()}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TranslationError(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise TranslationError(f"{path}: must be a JSON object mapping keys to strings")
    return data


def placeholders(text: str) -> set[str]:
    """The `{name}` fields a text expects."""
    return {field for _, field, _, _ in string.Formatter().parse(text) if field}


def translate(key: str, lang: str = REFERENCE, **values) -> str:
    """The text for `key` in `lang`, formatted with `values`.

    Falls back to English, then to the key itself, so a missing entry shows up visibly in the UI
    instead of crashing it (the test suite makes sure none is missing).
    """
    try:
        text = table(lang).get(key)
    except TranslationError:
        text = None
    if text is None:
        text = table(REFERENCE).get(key, key)
    try:
        return text.format(**values) if values else text
    except (KeyError, IndexError, ValueError):
        return text
