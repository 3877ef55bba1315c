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
network; hosts' clocks must agree to well within `LEASE_S`). A stale lock is taken over atomically:

- local paths: the lock is created whole and exclusively (a complete temporary file hard-linked to
  the name, which fails when the name exists; ``O_CREAT | O_EXCL`` where links are not supported).
  A take-over renames the stale file aside and checks that what it moved is the very file it judged
  stale (else it puts it back). Processes of one host also serialise every change of one lock with
  an flock in the temp folder. Folders made for the lock are removed again when the run wrote
  nothing into them, so a refused run leaves nothing behind.
- s3:// roots: a conditional-write lease (boto3): PutObject ``If-None-Match: *`` creates it,
  ``If-Match: <etag>`` refreshes it or takes a stale one over, and DeleteObject ``If-Match: <etag>``
  releases it only while it is still ours.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import posixpath
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlparse

from valuelex.errors import StoreError
from valuelex.store import layout

LEASE_S = 60.0
REFRESH_S = 20.0
POLL_S = 1.0
MAX_LOCK_BYTES = 64 * 1024
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


@dataclass(frozen=True)
class Found:
    """The lock as stored: its bytes, the version a conditional change names, its modification time."""

    data: bytes
    version: Any
    modified: float


class Lease(Protocol):
    """Where a lock lives; every change is conditional, so two writers can never both hold it."""

    def create(self, data: bytes) -> Any | None:
        """Create the lock if none exists: its version, or None when one exists."""
        ...

    def read(self) -> Found | None: ...

    def take_over(self, data: bytes, version: Any) -> Any | None:
        """Replace a stale lock only if it is still `version`: the new version, or None."""
        ...

    def refresh(self, data: bytes, version: Any) -> Any | None:
        """Replace our own lock only if it is still `version` (not taken over): the new version, or None."""
        ...

    def delete(self, version: Any) -> bool:
        """Delete the lock only if it is still `version`."""
        ...


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


def lease_for(uri: str) -> Lease:
    """The lock of an output root: a local file, or an object beside the run's on S3."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        from valuelex.store.s3_lease import S3Lease

        return S3Lease(parsed.netloc, posixpath.join(parsed.path.strip("/"), layout.LOCK).lstrip("/"))
    if parsed.scheme in ("", "file"):
        return LocalLease(os.path.join(os.path.abspath(parsed.path if parsed.scheme else uri), layout.LOCK))
    raise StoreError(f"{uri}: unsupported output URI scheme {parsed.scheme!r} (use a path or s3://)")


class LocalLease:
    """The lock as a file; its version is its bytes (every document differs: it holds ``expires``)."""

    def __init__(self, path: str):
        self.path = path
        self.dir = os.path.dirname(path)
        digest = hashlib.sha256(path.encode()).hexdigest()[:32]
        self.guard = os.path.join(tempfile.gettempdir(), "valuelex-locks", f"{digest}.flock")
        self.made: list[str] = []  # folders made for the lock, innermost first

    @contextlib.contextmanager
    def serialised(self) -> Iterator[None]:
        """One change at a time among this host's processes (the file protocol holds across hosts)."""
        fd = None
        with contextlib.suppress(OSError):  # no usable temp folder: the file protocol alone
            os.makedirs(os.path.dirname(self.guard), exist_ok=True)
            fd = os.open(self.guard, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fd is not None:
                os.close(fd)

    def _make_dirs(self) -> None:
        missing, folder = [], self.dir
        while not os.path.exists(folder) and os.path.dirname(folder) != folder:
            missing.append(folder)
            folder = os.path.dirname(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.made = missing or self.made

    def _write_tmp(self, data: bytes) -> str:
        tmp = f"{self.path}.{uuid.uuid4().hex}.tmp"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return tmp

    def _create(self, data: bytes) -> bytes | None:
        for _ in range(3):  # the folder removed under us by a writer that just let go: make it again
            try:
                self._make_dirs()
                tmp = self._write_tmp(data)
            except FileNotFoundError:
                continue
            try:
                os.link(tmp, self.path)
                return data
            except FileExistsError:
                return None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                return self._create_exclusive(data)
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return None

    def _create_exclusive(self, data: bytes) -> bytes | None:
        """Where hard links are not supported: O_EXCL (a reader may see it empty for a moment)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return data

    def create(self, data: bytes) -> bytes | None:
        try:
            with self.serialised():
                return self._create(data)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the output lock: {exc}") from exc

    def read(self) -> Found | None:
        try:
            with open(self.path, "rb") as handle:
                data = handle.read(MAX_LOCK_BYTES)
                modified = os.fstat(handle.fileno()).st_mtime
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot read the output lock: {exc}") from exc
        return Found(data, data, modified)

    def take_over(self, data: bytes, version: Any) -> bytes | None:
        try:
            with self.serialised():
                current = self.read()
                if current is None or current.data != version:
                    return None
                aside = f"{self.path}.{uuid.uuid4().hex}.old"
                try:
                    os.rename(self.path, aside)  # atomic: of two writers taking it over, one moves it
                except FileNotFoundError:
                    return None
                with open(aside, "rb") as handle:
                    moved = handle.read(MAX_LOCK_BYTES)
                if moved != version:  # another host replaced it in between: put theirs back
                    with contextlib.suppress(FileExistsError):
                        os.link(aside, self.path)
                    os.unlink(aside)
                    return None
                os.unlink(aside)
                return self._create(data)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot take over the output lock: {exc}") from exc

    def refresh(self, data: bytes, version: Any) -> bytes | None:
        """Check that it is ours, then replace it in one rename: the name never goes missing."""
        try:
            with self.serialised():
                current = self.read()
                if current is None or current.data != version:
                    return None
                os.replace(self._write_tmp(data), self.path)
                return data
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot refresh the output lock: {exc}") from exc

    def delete(self, version: Any) -> bool:
        try:
            with self.serialised():
                current = self.read()
                if current is None or current.data != version:
                    return False
                os.unlink(self.path)
                for folder in self.made:  # only folders made for the lock, and only when still empty
                    try:
                        os.rmdir(folder)
                    except OSError:
                        break
                return True
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot release the output lock: {exc}") from exc
