"""HTTP transfers for sync: small capped GETs and resumable, length-capped artifact downloads.

Only I/O lives here; deciding what to trust is ``manifest.py``'s and ``trust_index.py``'s job
and installing is ``store.py``'s. Nothing downloaded is trusted until its signature or its
sha256 from a signed document checks.

Transport rules: ``http://`` only to this device itself (loopback) unless the caller opts in
with ``insecure_http`` (a clinic LAN without TLS, knowingly); redirects are never followed (a
hub that answers 3xx is refused, so a token or a download is never steered elsewhere).
"""
from __future__ import annotations

import errno
import ipaddress
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

import requests

from edge_client.errors import DiskFullError, InsecureTransportError, IntegrityError, NetworkError, SyncError

__all__ = ["Fetcher", "Cancelled", "check_transport", "is_loopback"]

_RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_REDIRECTS = {301, 302, 303, 307, 308}


class Cancelled(Exception):
    """The caller set the cancel event; the partial file is kept for resume."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"cancelled at {done} of {total} bytes")
        self.done, self.total = done, total


def is_loopback(host: str | None) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1): traffic that never leaves the device."""
    if not host:
        return False
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_transport(url: str, *, insecure_http: bool = False) -> str:
    """Refuse a URL a device must not talk to; returns it without a trailing slash.

    Raises:
        SyncError: not http(s), or credentials in the URL. InsecureTransportError: ``http://`` to
        another host without ``insecure_http`` (tokens and model choices would travel in clear).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SyncError(f"server URL must be http(s)://HOST[:PORT], got {url!r}")
    if parts.username or parts.password:
        raise SyncError("server URL must not carry a user name or password")
    if parts.scheme == "http" and not insecure_http and not is_loopback(parts.hostname):
        raise InsecureTransportError(f"refusing plain http:// to {parts.hostname}: use https:// (the hub's "
                                     f"--tls-cert), or pass --insecure-http on a network you trust")
    return url.rstrip("/")


class Fetcher:
    """Talks to one hub.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``. timeout: (connect, read) seconds.
        retries: attempts per download after the first failure. backoff: first wait (doubles).
        ca_file: a CA bundle (PEM) to trust for an https hub with a private CA.
        insecure_http: allow ``http://`` to a host other than loopback (see ``check_transport``).

    Raises:
        SyncError, InsecureTransportError: a URL the device must not use.
    """

    def __init__(self, base_url: str, *, timeout=(5.0, 15.0), retries: int = 3, backoff: float = 0.5,
                 ca_file: str | None = None, insecure_http: bool = False) -> None:
        self.base = check_transport(base_url, insecure_http=insecure_http)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.session = requests.Session()
        self.session.verify = ca_file if ca_file else True
        self.bytes_received = 0

    def close(self) -> None:
        self.session.close()

    def get_small(self, path: str, *, cap: int, headers: dict | None = None) -> tuple[int, bytes, dict]:
        """GET a small document, refusing bodies over ``cap`` bytes.

        Returns: (status, body, headers). Raises: NetworkError.
        """
        url = self.base + path
        try:
            with self.session.get(url, headers=headers or {}, timeout=self.timeout, stream=True,
                                  allow_redirects=False) as r:
                _refuse_redirect(r)
                body = bytearray()
                for chunk in r.iter_content(16384):
                    body += chunk
                    if len(body) > cap:
                        raise NetworkError(f"{url}: response over {cap} bytes refused")
                self.bytes_received += len(body)
                return r.status_code, bytes(body), requests.structures.CaseInsensitiveDict(r.headers)
        except _RETRYABLE as exc:
            raise NetworkError(f"cannot reach the hub at {self.base} ({_short(exc)})") from None

    def download(self, path: str, dest: Path, *, size: int, etag: str,
                 progress: Callable[[int, int], None] | None = None,
                 cancel: threading.Event | None = None) -> int:
        """Download into ``dest``, resuming what is already there with ``Range``/``If-Range``.

        Args:
            path: URL path of the artifact. dest: the partial file. size: the signed size (a cap:
            more bytes are refused). etag: the expected strong ETag (for If-Range).
            progress: called with (done, total). cancel: stop when set.

        Returns:
            Bytes received over the network by this call.

        Raises:
            NetworkError after the retries, IntegrityError (more bytes than signed),
            DiskFullError, Cancelled.
        """
        url, received, wait = self.base + path, 0, self.backoff
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(wait)
                wait *= 2
            have = dest.stat().st_size if dest.exists() else 0
            if have > size:
                dest.unlink()
                have = 0
            if have == size:
                return received
            headers = {"Range": f"bytes={have}-", "If-Range": etag} if have else {}
            try:
                with self.session.get(url, headers=headers, timeout=self.timeout, stream=True,
                                      allow_redirects=False) as r:
                    _refuse_redirect(r)
                    if r.status_code in (404, 410):
                        raise SyncError(f"{url}: the hub no longer offers this artifact ({r.status_code})")
                    if r.status_code == 416:
                        dest.unlink(missing_ok=True)
                        last_error = "range refused (416)"
                        continue
                    if r.status_code == 206 and r.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
                        mode = "ab"
                    elif r.status_code == 200:
                        mode, have = "wb", 0
                    else:
                        last_error = f"HTTP {r.status_code}"
                        continue
                    received += self._stream(r, dest, mode, have, size, progress, cancel)
            except _RETRYABLE as exc:
                last_error = _short(exc)
                continue
            done = dest.stat().st_size if dest.exists() else 0
            if done == size:
                return received
            last_error = f"the hub sent {done} of {size} bytes"
        done = dest.stat().st_size if dest.exists() else 0
        raise NetworkError(f"download of {url} failed after {self.retries + 1} attempts ({last_error}); "
                           f"{done} of {size} bytes kept for resume: run sync again")

    def _stream(self, r, dest: Path, mode: str, have: int, size: int, progress, cancel) -> int:
        got = 0
        try:
            with open(dest, mode) as fh:
                for chunk in r.iter_content(65536):
                    if have + got + len(chunk) > size:
                        fh.close()
                        dest.unlink(missing_ok=True)
                        raise IntegrityError(f"{r.url}: the hub sent more than the signed size "
                                             f"({size} bytes): refused")
                    fh.write(chunk)
                    got += len(chunk)
                    self.bytes_received += len(chunk)
                    if progress:
                        progress(have + got, size)
                    if cancel is not None and cancel.is_set():
                        raise Cancelled(have + got, size)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                dest.unlink(missing_ok=True)  # give the space back; the installed model is untouched
                raise DiskFullError(f"not enough storage to download the model ({size} bytes): "
                                    f"{exc.strerror}; free some space and sync again") from None
            raise
        return got


def _refuse_redirect(r) -> None:
    if r.status_code in _REDIRECTS:
        raise NetworkError(f"{r.url}: the hub answered a redirect ({r.status_code} to "
                           f"{r.headers.get('Location', '?')}): not followed")


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."
