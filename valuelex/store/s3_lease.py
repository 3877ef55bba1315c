"""The output lock of an s3:// run as a conditional-write lease (see `valuelex.store.lock`).

Arrow's S3 filesystem, which writes the run, has no conditional writes, so the lock uses boto3:
``If-None-Match: *`` creates the object only where none exists, ``If-Match: <etag>`` replaces or
deletes it only while it is the version we saw. A 412 (or 409, a conflicting conditional write in
flight) means another writer won: never an error, the caller looks again.
"""

from __future__ import annotations

import os
from typing import Any

from valuelex.errors import StoreError
from valuelex.store.lock import MAX_LOCK_BYTES, Found

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
