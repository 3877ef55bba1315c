"""Where an output lock lives (`valuelex.store.lock` holds the rules): a local file or an S3 object.

Every change is conditional, so two writers can never both hold a lock:

- `LocalLease`: the file is created whole and exclusively (a complete temporary file hard-linked to
  the name, which fails when the name exists; ``O_CREAT | O_EXCL`` where links are not supported).
  A take-over renames the stale file aside and checks that what it moved is the very file judged
  stale (else it puts it back); a refresh checks the file is still ours and replaces it in one
  rename. Processes of one host serialise every change of one lock with an flock in the temp folder.
  Folders made for the lock are removed again when the run wrote nothing into them.
- `S3Lease`: Arrow's S3 filesystem, which writes the run, has no conditional writes, so the lock uses
  boto3: PutObject ``If-None-Match: *`` creates it, ``If-Match: <etag>`` refreshes it or takes a
  stale one over, DeleteObject ``If-Match: <etag>`` deletes it only while it is still ours. A 412
  (or 409, a conditional write in flight) means another writer won: the caller looks again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from valuelex.errors import StoreError
from valuelex.store import layout

MAX_LOCK_BYTES = 64 * 1024


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


def lease_for(uri: str) -> Lease:
    """The lock of an output root: a local file, or an object beside the run's on S3."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
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


LOST = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409", "404"}
UNSUPPORTED = {"NotImplemented", "InvalidArgument", "InvalidRequest", "501"}


class S3Lease:
    """The lock object ``s3://bucket/<prefix>/.valuelex.lock``; its version is the object's ETag."""

    def __init__(self, bucket: str, key: str):
        import boto3

        self.bucket, self.key = bucket, key
        endpoint = os.environ.get("VALUELEX_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name=region)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def _call(self, operation: str, **kwargs: Any) -> dict[str, Any] | None:
        """One S3 call: its response, or None when a condition failed (another writer won)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, operation)(Bucket=self.bucket, Key=self.key, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code in LOST or status in LOST:
                return None
            if code in UNSUPPORTED or status in UNSUPPORTED:
                raise NotImplementedError(code or status) from exc
            raise StoreError(f"{self.uri}: output lock: {operation} failed: {code or status}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"{self.uri}: output lock: cannot reach the store: {exc}") from exc

    def _put(self, data: bytes, **condition: str) -> str | None:
        try:
            response = self._call("put_object", Body=data, ContentType="application/json", **condition)
        except NotImplementedError as exc:
            raise StoreError(f"{self.uri}: the S3 endpoint does not support conditional writes ({exc}), "
                             "which the output lock needs") from exc
        return None if response is None else response["ETag"]

    def create(self, data: bytes) -> str | None:
        return self._put(data, IfNoneMatch="*")

    def read(self) -> Found | None:
        response = self._call("get_object")
        if response is None:
            return None
        data = response["Body"].read(MAX_LOCK_BYTES)
        return Found(data, response["ETag"], response["LastModified"].timestamp())

    def take_over(self, data: bytes, version: Any) -> str | None:
        return self._put(data, IfMatch=version)

    def refresh(self, data: bytes, version: Any) -> str | None:
        return self._put(data, IfMatch=version)

    def delete(self, version: Any) -> bool:
        try:
            return self._call("delete_object", IfMatch=version) is not None
        except NotImplementedError:  # no conditional delete here: compare, then delete (a small window)
            current = self.read()
            if current is None or current.version != version:
                return False
            return self._call("delete_object") is not None
