"""HTTP transfers for sync: small capped GETs and resumable, length-capped artifact downloads.

Only I/O lives here; deciding what to trust is ``manifest.py``'s job and installing is
``store.py``'s. Nothing downloaded is trusted until its sha256 matches the signed manifest.
"""
from __future__ import annotations

import errno
import threading
import time
from pathlib import Path
from typing import Callable

import requests

from edge_client.errors import DiskFullError, IntegrityError, NetworkError, SyncError

__all__ = ["Fetcher", "Cancelled"]

_RETRYABLE = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
_DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class Cancelled(Exception):
    """The caller set the cancel event; the partial file is kept for resume."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"cancelled at {done} of {total} bytes")
        self.done, self.total = done, total


class Fetcher:
    """Talks to one hub.

    Args:
        base_url: e.g. ``http://127.0.0.1:8000``. timeout: (connect, read) seconds.
        retries: attempts per download after the first failure. backoff: first wait (doubles).
        ca_file: a CA bundle (PEM) to trust for an https hub with a private CA.
    """

    def __init__(self, base_url: str, *, timeout=(5.0, 15.0), retries: int = 3, backoff: float = 0.5,
                 ca_file: str | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise SyncError(f"server URL must start with http:// or https://, got {base_url!r}")
        self.base = base_url.rstrip("/")
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
            with self.session.get(url, headers=headers or {}, timeout=self.timeout, stream=True) as r:
                body = bytearray()
                for chunk in r.iter_content(16384):
                    body += chunk
                    if len(body) > cap:
                        raise NetworkError(f"{url}: response over {cap} bytes refused")
                self.bytes_received += len(body)
                return r.status_code, bytes(body), dict(r.headers)
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
                with self.session.get(url, headers=headers, timeout=self.timeout, stream=True) as r:
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


def _short(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text if len(text) < 160 else text[:157] + "..."
