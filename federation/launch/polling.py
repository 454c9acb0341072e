"""Flower 1.42 polls with fixed sleeps that no flag changes: a SuperNode sleeps 3 s whenever a pull
finds no message and 0.5 s while its ClientApp works; the ServerApp's grid sleeps 3 s between
pulls for replies. SecAgg+ has four stages a round, so those sleeps alone are 10-20 s a round.

Polling fast instead is no cure: every poll is a TLS request that costs both ends ~3 ms of CPU, and
ten SuperNodes polling every 0.05 s kept this 2-core machine 78 % busy doing nothing
(benchmarks/bench_federation.py). So the poll interval adapts: `BackoffClock` starts at a short
interval after activity (a message received, messages pushed) and grows geometrically to a cap
while nothing happens. A federation in a round polls fast; an idle one costs almost nothing.

Opt-in (`--poll-interval`, run config `server-poll-interval`), default off; each patch replaces
one module's `time` and wraps one function, and changes nothing else.

    python -m federation.launch.polling 0.02 [--doorbell PORT] <flower-supernode arguments>
"""
from __future__ import annotations

import functools
import sys
import threading
import time as _time

from federation.launch.doorbell import ring

GROWTH = 1.5          # each empty poll waits this much longer than the last ...
MAX_INTERVAL = 1.0    # ... up to this (Flower's own sleeps are 3 s and 0.5 s)


class BackoffClock:
    """Stands in for a module's `time`: the same functions, but `sleep(s)` sleeps the current
    interval (never more than `s`), which starts at `interval` after `activity()` and grows by
    `growth` per sleep up to `max_interval`."""

    def __init__(self, interval: float, *, max_interval: float = MAX_INTERVAL, growth: float = GROWTH) -> None:
        if not interval > 0:
            raise ValueError(f"poll interval must be > 0 s, got {interval}")
        if max_interval < interval or growth < 1:
            raise ValueError(f"need max_interval >= interval and growth >= 1, got {max_interval}, {growth}")
        self.interval, self.max_interval, self.growth = interval, max_interval, growth
        self._current = interval
        self._lock = threading.Lock()

    def activity(self) -> None:
        """Something happened: poll fast again."""
        with self._lock:
            self._current = self.interval

    def advance(self, seconds: float | None = None) -> float:
        """The next wait (at most `seconds`); the one after it is `growth` times longer."""
        with self._lock:
            wait = self._current if seconds is None else min(seconds, self._current)
            self._current = min(self._current * self.growth, self.max_interval)
        return wait

    def sleep(self, seconds: float | None = None) -> None:
        _time.sleep(self.advance(seconds))

    def __getattr__(self, name: str):
        return getattr(_time, name)


def _reset_after(clock: BackoffClock, function, *, when=lambda result: True):
    @functools.wraps(function)
    def wrapped(*args, **kwargs):
        result = function(*args, **kwargs)
        if when(result):
            clock.activity()
        return result
    return wrapped


def fast_object_pulls(interval: float, *, max_interval: float = MAX_INTERVAL) -> None:
    """Retry a missing object after `interval` (doubling to `max_interval`) instead of 1 s.

    Flower retries an object that is not there yet after 1 s, then 2, 4, 8 s. It misses every stage:
    a SuperNode shows a message to its ClientApp before it has pulled the message's objects from
    the SuperLink, and the ServerApp pulls replies whose objects are still being pushed; each miss
    cost 1-3 s a stage. The retry bound becomes Flower's `max_time` alone (2 h, as before).
    """
    from flwr.supercore.inflatable import inflatable_utils
    for function in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
        function.__kwdefaults__.update(initial_backoff=interval, backoff_cap=max_interval,
                                       max_tries_per_object=None)


def adaptive_supernode(interval: float, *, doorbell: int | None = None) -> BackoffClock:
    """In a SuperNode process: pull and reply waits follow a BackoffClock reset when a message
    arrives and when the reply has left; with `doorbell` (a UDP port, doorbell.py) the warm worker
    is rung once a message and its objects are stored."""
    from flwr.supernode import start_client_internal as loop
    clock = BackoffClock(interval)
    fast_object_pulls(interval)
    loop.time = clock

    def received(run_id) -> bool:
        if run_id is not None and doorbell is not None:
            ring(doorbell)
        return run_id is not None

    loop._pull_and_store_message = _reset_after(clock, loop._pull_and_store_message, when=received)
    loop._push_messages = _reset_after(clock, loop._push_messages)   # the next stage follows soon
    return clock


def adaptive_server_grid(interval: float) -> BackoffClock:
    """In the ServerApp process: the wait for replies restarts fast after each push."""
    from flwr.superlink.grid import http_grid
    clock = BackoffClock(interval)
    fast_object_pulls(interval)
    http_grid.time = clock
    http_grid.HttpGrid.push_messages = _reset_after(clock, http_grid.HttpGrid.push_messages)
    return clock


def main() -> int:
    args = sys.argv[1:]
    if not args:
        print("usage: python -m federation.launch.polling SECONDS [--doorbell PORT] <flower-supernode arguments>",
              file=sys.stderr)
        return 2
    try:
        interval, doorbell = float(args.pop(0)), None
        if args[:1] == ["--doorbell"]:
            doorbell = int(args[1])
            del args[:2]
        adaptive_supernode(interval, doorbell=doorbell)
    except (ValueError, IndexError) as exc:
        print(f"error: poll interval / --doorbell port: {exc}", file=sys.stderr)
        return 2
    from flwr.supernode.cli import flower_supernode
    sys.argv = ["flower-supernode", *args]
    return flower_supernode()


if __name__ == "__main__":
    sys.exit(main())
