"""A loopback doorbell from a SuperNode to its warm ClientApp worker (warm_worker.py).

The worker learns of a new message by polling the SuperNode's Runtime API (AcquireTask); at ten
nodes those polls were a fifth of all requests in a round, and each found the message before its
objects were stored, so the worker's pulls missed and retried. With the doorbell the SuperNode
(`python -m federation.launch.polling ... --doorbell PORT`) rings once a message and all its objects are
stored, and the worker polls at once; its own polling stays as a slow fallback.

A ring is one empty UDP datagram to 127.0.0.1: it carries nothing and only wakes a poll, so a stray
datagram costs one request, and a lost one costs one fallback interval.
"""
from __future__ import annotations

import select
import socket


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ring(port: int) -> None:
    """Ring the worker listening on 127.0.0.1:`port` (never raises: the worker also polls)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"", ("127.0.0.1", port))
    except OSError:
        pass


class Doorbell:
    """The worker's end: `wait(timeout)` returns True as soon as a ring arrives."""

    def __init__(self, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind(("127.0.0.1", port))
        except OSError as exc:
            self._sock.close()
            raise OSError(f"doorbell: cannot listen on 127.0.0.1:{port} (UDP): {exc}") from None
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a ring; drain every pending ring (one poll answers them all)."""
        readable, _, _ = select.select([self._sock], [], [], timeout)
        rang = False
        while readable:
            try:
                self._sock.recv(16)
                rang = True
            except BlockingIOError:
                break
        return rang

    def close(self) -> None:
        self._sock.close()
