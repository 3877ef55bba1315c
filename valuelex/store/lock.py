"""One writer per run: a lock on the output root, ``OUT/.valuelex.lock``.

Why: two commands writing one run generate (and pay for) the same rows twice, and the stage record
keeps only the last one's counts. A writing command takes the lock before it writes anything
(study.json included) and releases it at its end, on an error and on Ctrl-C too; a second writer
waits (`wait` seconds, polling) or is refused at once with `LockHeld` (exit 2 in the CLI).

The lock is a small JSON document: ``host``, ``pid``, ``command``, ``started``, ``expires`` (plus
``token``, naming the holder, and ``machine``: boot id and pid namespace, so that containers sharing
a host name never judge each other's pids). It is a lease: a daemon thread moves ``expires``
`LEASE_S` ahead every `REFRESH_S` while the holder lives.

Stale rule: on the same host (and machine), a holder whose pid is not alive is stale at once (a
``kill -9``); any other holder is stale once ``expires`` is past (a host that died or lost its
network; hosts' clocks must agree to well within `LEASE_S`). A stale lock is taken over atomically
(`valuelex.store.leases`: a local file, or an S3 conditional-write lease). A holder that could not
refresh for a whole lease (suspended, cut off) may be taken over; its next refresh sees that, logs it
and stops (`lost`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from valuelex.errors import StoreError
from valuelex.store.leases import Lease, lease_for

LEASE_S = 60.0
REFRESH_S = 20.0
POLL_S = 1.0
log = logging.getLogger("valuelex.lock")


class LockHeld(StoreError):
    """Another writer holds the run's lock (and did not let go within the wait)."""

    def __init__(self, uri: str, holder: dict[str, Any], waited: float = 0.0):
        self.uri, self.holder = uri, holder
        what = (f"{holder.get('command', 'an unknown command')} (host {holder.get('host', '?')}, "
                f"pid {holder.get('pid', '?')}) since {holder.get('started', '?')}")
        if waited > 0:
            super().__init__(f"{uri}: still being written by {what} after waiting {waited:g} s; "
                             "wait longer (--wait SECONDS) or stop it")
        else:
            super().__init__(f"{uri}: being written by {what}; wait for it (--wait SECONDS) or stop it")


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def machine_id() -> str:
    """Boot id and pid namespace: the same host name with another of these cannot see our pids."""
    parts = []
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as handle:
        parts.append(handle.read().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return ":".join(parts)


def pid_alive(pid: Any) -> bool:
    """Whether a process of this machine runs under `pid` (a zombie, killed but not reaped, does not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError), open(f"/proc/{pid}/stat") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    return True


class OutputLock:
    """The lock of one output root, held by one command of this process.

        with OutputLock("runs/x", "valuelex elicit").acquire(wait=30):
            ...  # write the run
    """

    def __init__(self, uri: str, command: str, *, lease_s: float = LEASE_S, refresh_s: float = REFRESH_S,
                 host: str | None = None, pid: int | None = None, lease: Lease | None = None):
        self.uri = uri.rstrip("/")
        self.command, self.lease_s, self.refresh_s = command, lease_s, refresh_s
        self.host, self.pid, self.machine = host or socket.gethostname(), pid or os.getpid(), machine_id()
        self.token = uuid.uuid4().hex
        self.lease = lease or lease_for(self.uri)
        self.started = time.time()
        self.lost = False  # set when a refresh found the lock taken over (the lease ran out unrefreshed)
        self._version: Any = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._version is not None

    def document(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "command": self.command, "started": iso(self.started),
                "expires": iso(time.time() + self.lease_s), "token": self.token, "machine": self.machine}

    def encode(self) -> bytes:
        return json.dumps(self.document(), indent=2).encode()

    def acquire(self, wait: float = 0.0, poll_s: float = POLL_S) -> OutputLock:
        """Take the lock, polling up to `wait` seconds while another live writer holds it; else `LockHeld`."""
        wait = wait if wait >= 0 else 0.0  # NaN too
        deadline = time.monotonic() + wait
        told = False
        while True:
            holder = self._try()
            if holder is None:
                self._thread = threading.Thread(target=self._refresh_loop, name="valuelex-lock", daemon=True)
                self._thread.start()
                return self
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockHeld(self.uri, holder, waited=wait)
            if not told:
                log.warning("%s; waiting up to %g s", str(LockHeld(self.uri, holder)).split(";")[0], wait)
                told = True
            time.sleep(min(poll_s, remaining))

    def _try(self) -> dict[str, Any] | None:
        """One attempt: None when taken (created, or a stale one taken over), else the live holder."""
        holder: dict[str, Any] = {}
        for _ in range(5):  # a lock released or replaced while we look at it: look again
            self.started = time.time()
            version = self.lease.create(self.encode())
            if version is not None:
                self._version = version
                return None
            found = self.lease.read()
            if found is None:
                continue
            holder = decode(found.data)
            if not self.is_stale(holder, found.modified):
                return holder or {"started": iso(found.modified)}
            version = self.lease.take_over(self.encode(), found.version)
            if version is not None:
                log.warning("%s: took over the stale lock of %s (host %s, pid %s)", self.uri,
                            holder.get("command", "an unknown command"), holder.get("host"), holder.get("pid"))
                self._version = version
                return None
        return holder

    def is_stale(self, holder: dict[str, Any], modified: float) -> bool:
        """The stale rule: a dead pid of this machine at once; anything else once `expires` is past."""
        now = time.time()
        if not holder:  # unreadable: judged by its age
            return now > modified + self.lease_s
        if holder.get("host") == self.host and holder.get("machine") == self.machine \
                and not pid_alive(holder.get("pid")):
            return True
        expires = parse_iso(holder.get("expires"))
        return expires is None or now > expires

    def refresh(self) -> bool:
        """Move ``expires`` ahead; False when the lock is no longer ours."""
        with self._mutex:
            if self._version is None:
                return False
            version = self.lease.refresh(self.encode(), self._version)
            if version is None:
                self.lost, self._version = True, None
                return False
            self._version = version
            return True

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                if not self.refresh():
                    log.error("%s: the output lock was taken over by another writer", self.uri)
                    return
            except StoreError as exc:  # a store out of reach for a moment: try again next time
                log.warning("%s: cannot refresh the output lock: %s", self.uri, exc)

    def release(self) -> None:
        """Stop refreshing and delete the lock if it is still ours (never another writer's)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        with self._mutex:
            version, self._version = self._version, None
            if version is not None:
                try:
                    self.lease.delete(version)
                except StoreError as exc:  # never hide the error the run may be ending with
                    log.warning("%s: cannot release the output lock: %s", self.uri, exc)

    def __enter__(self) -> OutputLock:
        if not self.held:
            self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def hold(uri: str, command: str, wait: float = 0.0) -> Iterator[OutputLock]:
    """Hold the output root's lock for a `with` block (released on any exit, Ctrl-C included)."""
    lock = OutputLock(uri, command).acquire(wait)
    try:
        yield lock
    finally:
        lock.release()


def decode(data: bytes) -> dict[str, Any]:
    """The holder's document; {} when the bytes are not one (a partial or foreign file)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


