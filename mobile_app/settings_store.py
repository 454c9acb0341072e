"""The app's settings: a small JSON file, validated on load and written atomically.

Pure Python (no Kivy) so it is testable on its own and usable before the window exists.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlparse

from edge_client.fileio import atomic_write_text

from .provision import PublisherKeyError, encode_key, parse_key

AUTO_RUNTIME = "auto"    # let the edge client choose; any other value names one of its runtimes


class SettingsError(ValueError):
    """A setting has a value the app cannot use; the message says which and why."""


def check_server_url(url: str) -> str:
    """Return the URL without surrounding blanks or a trailing slash; "" means "not set".

    Raises:
        SettingsError: not http(s), or no host.
    """
    url = url.strip().rstrip("/")
    if not url:
        return ""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(f"server address {url!r} must start with http:// or https:// and name a host")
    return url


@dataclass(frozen=True)
class Settings:
    """What the user can change in the Settings screen (plus the pinned public key)."""

    server_url: str = ""
    runtime: str = "auto"
    language: str = "en"
    training_enabled: bool = False
    public_key: str = ""        # base64 Ed25519 key pasted or scanned here; "" = the built-in one
    device_token: str = field(default="", repr=False)   # the hub's upload token; never logged or shown
    operator: str = ""          # who grades on this device (remembered for the next result)

    def validated(self) -> "Settings":
        """A copy with normalised values.

        Raises:
            SettingsError: naming the bad field.
        """
        if not isinstance(self.runtime, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", self.runtime):
            raise SettingsError(f"runtime {self.runtime!r} must be 'auto' or a runtime name such as 'litert'")
        if not isinstance(self.training_enabled, bool):
            raise SettingsError("training_enabled must be true or false")
        if not isinstance(self.language, str) or not self.language:
            raise SettingsError("language must be a language code such as 'en'")
        if not isinstance(self.device_token, str) or any(c.isspace() for c in self.device_token.strip()):
            raise SettingsError("the device token must be one word without spaces, as the hub printed it")
        if not isinstance(self.operator, str) or len(self.operator) > 64 or not self.operator.isprintable():
            raise SettingsError("operator must be a name of at most 64 printable characters")
        key = ""
        if self.public_key.strip():
            try:
                key = encode_key(parse_key(self.public_key, source="public_key"))
            except PublisherKeyError as exc:
                raise SettingsError(f"{exc}: paste the publisher's public key (base64) or scan its QR code") from None
        return replace(self, server_url=check_server_url(self.server_url), public_key=key,
                       device_token=self.device_token.strip(), operator=self.operator.strip())


class SettingsStore:
    """Loads and saves `Settings` at one path."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> Settings:
        """The saved settings, or the defaults when none are saved yet.

        Raises:
            SettingsError: the file exists but is not valid settings JSON (the message names it).
        """
        if not self.path.exists():
            return Settings()
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SettingsError(f"{self.path}: cannot read settings: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{self.path}: settings must be a JSON object")
        known = {f.name for f in fields(Settings)}
        try:
            return Settings(**{k: v for k, v in data.items() if k in known}).validated()
        except (SettingsError, TypeError, AttributeError) as exc:
            raise SettingsError(f"{self.path}: {exc}") from exc

    def save(self, settings: Settings) -> Settings:
        """Validate and write atomically and durably (mode 0600: it holds the device token);
        returns what was written."""
        settings = settings.validated()
        atomic_write_text(self.path, json.dumps(asdict(settings), indent=1, sort_keys=True), mode=0o600)
        return settings
