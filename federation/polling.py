"""Flower 1.42 polls with fixed 3 s sleeps that no flag changes: the SuperNode sleeps 3 s whenever
a pull finds no message (so every SecAgg+ stage waits for it, twice: to receive and to push the
reply) and the ServerApp's grid sleeps 3 s between pulls for replies. With four SecAgg+ stages a
round, that alone is 10-20 s. `cap_sleep` shortens those sleeps in one module; it is opt-in
(`--poll-interval`, run config `server-poll-interval`), default off, and changes nothing else.

    python -m federation.polling 0.1 <flower-supernode arguments>   # a SuperNode polling every 0.1 s
"""
from __future__ import annotations

import sys
import time as _time
from types import ModuleType


class _CappedClock:
    """Stands in for a module's `time`: the same functions, with `sleep` capped."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        _time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str):
        return getattr(_time, name)


def cap_sleep(module: ModuleType, cap: float) -> None:
    """Cap every `time.sleep` of `module` at `cap` seconds (cap > 0)."""
    if not cap > 0:
        raise ValueError(f"poll interval must be > 0 s, got {cap}")
    module.time = _CappedClock(cap)


def fast_server_grid(cap: float) -> None:
    """In the ServerApp process: the grid's wait for replies polls every `cap` s instead of 3 s."""
    from flwr.superlink.grid import http_grid
    cap_sleep(http_grid, cap)


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m federation.polling SECONDS <flower-supernode arguments>", file=sys.stderr)
        return 2
    try:
        cap = float(sys.argv[1])
        from flwr.supernode import start_client_internal
        cap_sleep(start_client_internal, cap)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from flwr.supernode.cli import flower_supernode
    sys.argv = ["flower-supernode", *sys.argv[2:]]
    return flower_supernode()


if __name__ == "__main__":
    sys.exit(main())
