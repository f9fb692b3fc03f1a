"""Lifecycle of a server process group: spawn, watch, stop, and never leave it behind.

The one launcher every part of the project uses to run vLLM (``emoreason serve``, the demo, the GRPO benchmark,
the tests) builds on these pieces:

* the server runs in its own session, so its whole process group (vLLM's API server, its engine core and
  workers) can be stopped together: SIGTERM, then SIGKILL after a grace period;
* :class:`SignalGuard` records SIGTERM / SIGINT / SIGHUP from the moment it is entered (before the spawn), so a
  signal during start-up, serving or shutdown stops the group and the launcher exits with 128 + signal;
* if the launcher dies without cleaning up (SIGKILL, a crash), two mechanisms stop the group, both armed inside
  the server process by :mod:`emoreason.serving.vllm_entry`:

  - a *death pipe*: the launcher keeps the only write end of a pipe; a small reaper process forked in the
    server's group blocks on the read end, and on EOF (every holder of the write end gone) it sends SIGTERM to
    the group, then SIGKILL after the grace period. It outlives vLLM's own processes, so an engine core that
    ignores SIGTERM is still killed. Limit: processes *forked* by the launcher after the spawn (e.g. data-loader
    workers) inherit the write end, so EOF comes only once they are gone too;
  - ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` on the server process (Linux only), armed only when the launcher spawns
    from its main thread: the kernel sends the signal when the *thread* that spawned the child exits, and only
    to that direct child, so vLLM's engine core relies on the reaper or on vLLM's own shutdown.

Membership of a group is read from ``/proc`` (Linux); elsewhere the group is stopped without the check.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
DEFAULT_GRACE_S = 20.0

# environment the launcher hands to the server process (read by emoreason.serving.vllm_entry)
ENV_DEATH_FD = "EMOREASON_DEATH_FD"
ENV_LAUNCHER_PID = "EMOREASON_LAUNCHER_PID"
ENV_PDEATHSIG = "EMOREASON_PDEATHSIG"
ENV_GRACE = "EMOREASON_STOP_GRACE_S"


def port_in_use(host: str, port: int) -> bool:
    """True when ``host:port`` cannot be bound (another server listens there). SO_REUSEADDR as servers set it,
    so sockets in TIME_WAIT from a server that just stopped do not count."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def group_members(pgid: int) -> list[int]:
    """Pids of the live (not zombie) processes in process group ``pgid`` (Linux ``/proc``; [] elsewhere)."""
    members = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def group_rss_bytes(pgid: int) -> int:
    """Resident memory summed over the process group (what the server holds, all its processes together)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in group_members(pgid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
    return total


def signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; False when no process is left in it."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # only a zombie leader left on some systems
        return bool(group_members(pgid))


def wait_group_empty(pgid: int, timeout: float, process: subprocess.Popen | None = None) -> bool:
    """Wait until nothing of the group runs (reaping ``process`` if given); True when it emptied in time."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.poll()
        if not group_members(pgid) and (process is None or process.returncode is not None):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def stop_group(pgid: int, process: subprocess.Popen | None = None, grace: float = DEFAULT_GRACE_S) -> None:
    """SIGTERM to the whole group, SIGKILL to whatever is left after ``grace`` seconds (always: stragglers such
    as an orphaned engine core or the reaper die too), then reap the leader."""
    if signal_group(pgid, signal.SIGTERM):
        wait_group_empty(pgid, grace, process)
    signal_group(pgid, signal.SIGKILL)
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
    wait_group_empty(pgid, 5.0)


class SignalGuard:
    """Records SIGTERM / SIGINT / SIGHUP while entered (main thread only; elsewhere it does nothing), so the
    code that owns a server decides how to stop it. ``on_signal(signum, count)`` runs in the handler; the second
    signal is a hint to hurry (stop without waiting out the grace period)."""

    def __init__(self, signals: Sequence[int] = STOP_SIGNALS, on_signal=None):
        self.signals, self.on_signal = tuple(signals), on_signal
        self.signum: int | None = None
        self.count = 0
        self._previous: dict[int, object] = {}

    @property
    def caught(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The conventional exit status after a signal: 128 + its number."""
        return 128 + int(self.signum or 0)

    def _handle(self, signum, frame) -> None:
        self.signum = self.signum or signum
        self.count += 1
        if self.on_signal is not None:
            self.on_signal(signum, self.count)

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


def spawn_group(cmd: Sequence[str], env: dict[str, str], log_path: str | Path,
                grace: float = DEFAULT_GRACE_S) -> tuple[subprocess.Popen, int]:
    """Start ``cmd`` as the leader of a new session, output appended to ``log_path``, with a death pipe.

    Returns the process and the write end of the death pipe: keep it open while the server should live; it
    closes by itself when this process dies, however it dies."""
    read_end, write_end = os.pipe()  # both non-inheritable; only read_end is passed on, explicitly
    env = dict(env)
    env.update({ENV_DEATH_FD: str(read_end), ENV_LAUNCHER_PID: str(os.getpid()), ENV_GRACE: f"{grace:g}",
                ENV_PDEATHSIG: "1" if threading.current_thread() is threading.main_thread() else "0"})
    try:
        with open(log_path, "ab") as log:
            process = subprocess.Popen(list(cmd), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(read_end,))
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return process, write_end


def log_tail(path: str | Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file ('' when there is none)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class LogFollower(threading.Thread):
    """Echoes what is appended to a log file (like ``tail -f``) until stopped."""

    def __init__(self, path: str | Path, stream=None):
        super().__init__(daemon=True, name="log-follower")
        self.path, self.stream = Path(path), stream or sys.stderr
        self._stop_event = threading.Event()
        self._offset = self.path.stat().st_size if self.path.exists() else 0

    def _drain(self) -> None:
        with contextlib.suppress(OSError), open(self.path, "rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
            self._offset += len(chunk)
            if chunk:
                self.stream.write(chunk.decode(errors="replace"))
                self.stream.flush()

    def run(self) -> None:
        while not self._stop_event.wait(0.3):
            self._drain()
        self._drain()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=2)
