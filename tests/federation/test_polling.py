"""The federation's speed-ups over Flower 1.42's fixed sleeps: the adaptive poll clock, the
SuperNode -> worker doorbell, and the Flower internals they patch (checked to still exist, so a
Flower upgrade that moves them fails here, not as a silent slowdown)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from federation.launch.doorbell import Doorbell, free_udp_port, ring
from federation.launch.polling import BackoffClock


def test_backoff_clock_grows_to_its_cap_and_resets_on_activity():
    clock = BackoffClock(0.02, max_interval=0.1, growth=2)
    assert [clock.advance() for _ in range(5)] == pytest.approx([0.02, 0.04, 0.08, 0.1, 0.1])
    clock.activity()
    assert clock.advance() == pytest.approx(0.02)
    assert clock.advance(0.01) == pytest.approx(0.01)   # never longer than the caller's own sleep
    with pytest.raises(ValueError, match="poll interval"):
        BackoffClock(0)
    with pytest.raises(ValueError, match="max_interval"):
        BackoffClock(1.0, max_interval=0.5)


def test_doorbell_wakes_the_waiter_and_drains_pending_rings():
    bell = Doorbell(free_udp_port())
    try:
        started = time.monotonic()
        assert bell.wait(0.05) is False and time.monotonic() - started >= 0.04   # nobody rang
        timer = threading.Timer(0.1, ring, args=(bell.port,))
        timer.start()
        started = time.monotonic()
        assert bell.wait(5.0) is True
        assert time.monotonic() - started < 2.0
        for _ in range(3):
            ring(bell.port)
        time.sleep(0.05)
        assert bell.wait(0.5) is True      # three rings, one wake-up ...
        assert bell.wait(0.05) is False    # ... and none left over
    finally:
        bell.close()
    ring(bell.port)   # nobody listening: ringing never raises


def test_doorbell_port_in_use_is_a_clear_error():
    bell = Doorbell(free_udp_port())
    try:
        with pytest.raises(OSError, match=f"doorbell: cannot listen on 127.0.0.1:{bell.port}"):
            Doorbell(bell.port)
    finally:
        bell.close()


def test_flower_internals_the_patches_rely_on_still_exist():
    """In a fresh interpreter: the SuperNode loop, the grid and the object pulls take the patches."""
    code = textwrap.dedent("""
        from federation.launch.polling import adaptive_server_grid, adaptive_supernode
        from flwr.supercore.inflatable import inflatable_utils
        from flwr.supernode import start_client_internal as loop
        from flwr.superlink.grid import http_grid
        clock = adaptive_supernode(0.03, doorbell=9)
        assert loop.time is clock and loop._pull_and_store_message.__wrapped__ and loop._push_messages.__wrapped__
        grid_clock = adaptive_server_grid(0.03)
        assert http_grid.time is grid_clock and http_grid.HttpGrid.push_messages.__wrapped__
        for f in (inflatable_utils.pull_objects, inflatable_utils.pull_and_inflate_object_from_tree):
            assert f.__kwdefaults__["initial_backoff"] == 0.03, f
            assert f.__kwdefaults__["max_tries_per_object"] is None, f
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_polling_launcher_rejects_a_bad_interval():
    out = subprocess.run([sys.executable, "-m", "federation.launch.polling", "fast", "--doorbell", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "poll interval" in out.stderr
