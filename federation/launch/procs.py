"""Start processes and stop exactly what we started, by PID (with the children they spawned:
SuperLink and SuperNode start SuperExec, which starts the Server/ClientApp processes)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc), children first found first."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a PID from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_pids(pids: list[int], *, grace: float = 5.0) -> list[int]:
    """SIGTERM the given PIDs and all their descendants (found BEFORE any is signalled, so none is
    orphaned unseen), then SIGKILL what is left after `grace` seconds. Returns the PIDs signalled."""
    targets: list[int] = []
    for pid in pids:
        for p in [pid, *descendants(pid)]:
            if p not in targets and p != os.getpid():
                targets.append(p)
    for p in targets:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in targets):
        time.sleep(0.1)
    for p in targets:
        if alive(p):
            _signal(p, signal.SIGKILL)
    return targets


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def start(command: list[str], *, log: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a long-running process with its output in `log`."""
    handle = open(log, "ab")
    try:
        return subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                stdin=subprocess.DEVNULL)
    finally:
        handle.close()
