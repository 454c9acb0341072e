"""A loopback TCP proxy in front of the hub whose model downloads can be held half-way: a slow
link made deterministic, so a test can grade while an update is really downloading.

Bytes flow unchanged in both directions. Once a connection has asked for `/v1/artifacts/`, and
while the gate is closed, the proxy forwards the first HOLD_AFTER bytes of the hub's answer,
then waits until `release()`: the app sees a download in progress. Only 127.0.0.1 is used.
"""
from __future__ import annotations

import socket
import threading

HOLD_AFTER = 256 * 1024


class GateProxy:
    """Listens on 127.0.0.1:<free port>, forwards to the hub at `target` (host, port)."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self._open = threading.Event()
        self._open.set()
        self.holding = threading.Event()          # set while a download waits at the gate
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="gate-proxy", daemon=True)
        self._thread.start()

    def hold(self) -> None:
        """Close the gate: the next model download stops after HOLD_AFTER bytes."""
        self._open.clear()

    def release(self) -> None:
        """Open the gate: a held download goes on."""
        self._open.set()

    def close(self) -> None:
        """Stop listening and cut every connection (as if the network went away)."""
        self._stop.set()
        self._open.set()
        self._sock.close()
        for conn in list(self._conns):
            try:
                conn.close()
            except OSError:
                pass
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._conns += [client, upstream]
            state = {"artifact": False}
            threading.Thread(target=self._pump, args=(client, upstream, state, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, from_hub: bool) -> None:
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not from_hub and b"GET /v1/artifacts/" in data:
                    state["artifact"] = True
                if from_hub and state["artifact"] and not self._open.is_set():
                    room = max(0, HOLD_AFTER - sent)
                    if len(data) > room:                  # forward up to the limit, then wait
                        dst.sendall(data[:room])
                        sent += room
                        data = data[room:]
                        self.holding.set()
                        self._open.wait()
                        self.holding.clear()
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
