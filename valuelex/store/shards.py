"""The result store's mechanics: Parquet shards and whole files under one output root, local or s3://.

Tables are ``ROOT/<table>/part-<uuid>.parquet``; which tables and files a run has, and which of
their rows count, is `valuelex.store.run.RunStore`'s business (names in `valuelex.store.layout`).
A shard is serialised in memory and published in one step (rename on local disk, one upload on S3), so a reader never
sees a partial file and a killed run leaves only whole shards. Rows are keyed by ``row_id``;
failed rows are stored with their error and count as not done, so the next run retries them.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import uuid
from collections.abc import Iterable
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from valuelex.errors import StoreError

TMP_DIR = "_incoming"


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or s3:// URI; S3 endpoint and keys come from the env.

    ``AWS_ENDPOINT_URL`` (or ``VALUELEX_S3_ENDPOINT``) points at a non-AWS endpoint such as MinIO;
    credentials are read by Arrow's AWS SDK from the usual environment variables only.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        endpoint = os.environ.get("VALUELEX_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs: dict = {"region": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        if endpoint:
            ep = urlparse(endpoint)
            kwargs.update(endpoint_override=ep.netloc or ep.path, scheme=ep.scheme or "http")
        return pafs.S3FileSystem(**kwargs), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme in ("", "file"):
        path = os.path.abspath(parsed.path if parsed.scheme else uri)
        return pafs.LocalFileSystem(), path
    raise StoreError(f"{uri}: unsupported output URI scheme {parsed.scheme!r} (use a path or s3://)")


def join(uri: str, *parts: str) -> str:
    """Join below a URI, refusing parts that would climb out of it."""
    for part in parts:
        if part.startswith("/") or ".." in part.split("/"):
            raise StoreError(f"{part!r}: path escapes the output root {uri}")
    return posixpath.join(uri.rstrip("/"), *parts)


class OutputRoot:
    """One run's output folder; tables are shard sets below it, documents are small JSON files."""

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self.fs, self.path = filesystem(self.uri)

    def table(self, name: str) -> ShardTable:
        return ShardTable(self, name)

    def publish_bytes(self, relpath: str, data: bytes) -> None:
        """Write a whole file so that it appears complete or not at all."""
        target = join(self.path, relpath)
        try:
            if isinstance(self.fs, pafs.LocalFileSystem):
                tmp = join(self.path, TMP_DIR, f"{uuid.uuid4().hex}.tmp")
                self.fs.create_dir(posixpath.dirname(tmp), recursive=True)
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.create_dir(posixpath.dirname(target), recursive=True)
                self.fs.move(tmp, target)
            else:
                # object stores: the object exists only once its upload completes; Arrow may use a multipart
                # upload, and one cut off midway is invisible (billed until a bucket lifecycle rule aborts it)
                with self.fs.open_output_stream(target) as out:
                    out.write(data)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.uri}/{relpath}: cannot write: {exc}") from exc

    def write_json(self, relpath: str, document: dict) -> None:
        self.publish_bytes(relpath, json.dumps(document, indent=2, sort_keys=True).encode())

    def write_parquet(self, relpath: str, table: pa.Table) -> None:
        """Publish one whole Parquet file (not a shard table): it appears complete or not at all."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        self.publish_bytes(relpath, sink.getvalue().to_pybytes())

    def read_parquet(self, relpath: str) -> pa.Table | None:
        """One whole Parquet file, or None when it does not exist."""
        target = join(self.path, relpath)
        try:
            if self.fs.get_file_info(target).type == pafs.FileType.NotFound:
                return None
            with self.fs.open_input_file(target) as handle:
                return pq.read_table(pa.BufferReader(handle.read()))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.uri}/{relpath}: cannot read: {exc}") from exc

    def list_dir(self, relpath: str = "") -> list[pafs.FileInfo]:
        """What stands directly in a folder of the run (nothing when it does not exist)."""
        path = join(self.path, relpath) if relpath else self.path
        try:
            return self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.uri}/{relpath}: cannot list: {exc}") from exc

    def read_bytes(self, relpath: str) -> bytes | None:
        target = join(self.path, relpath)
        try:
            if self.fs.get_file_info(target).type == pafs.FileType.NotFound:
                return None
            with self.fs.open_input_stream(target) as stream:
                return stream.read()
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.uri}/{relpath}: cannot read: {exc}") from exc

    def read_json(self, relpath: str) -> dict | None:
        data = self.read_bytes(relpath)
        return None if data is None else json.loads(data)

    def exists(self, relpath: str) -> bool:
        try:
            return self.fs.get_file_info(join(self.path, relpath)).type != pafs.FileType.NotFound
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.uri}: cannot reach the store: {exc}") from exc


class ShardTable:
    """A table stored as whole Parquet shards; the unit of resume is the shard."""

    def __init__(self, root: OutputRoot, name: str):
        self.root = root
        self.name = name
        self.dir = join(root.path, name)

    def shard_paths(self) -> list[str]:
        try:
            infos = self.root.fs.get_file_info(pafs.FileSelector(self.dir, allow_not_found=True))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.root.uri}/{self.name}: cannot list shards: {exc}") from exc
        return sorted(
            i.path for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
        )

    def write(self, table: pa.Table, *, key: str | None = None) -> str | None:
        """Publish one shard; returns its path (None for an empty table).

        The shard's name is ``part-<key>.parquet`` when a `key` is given (hex: a retried write of the
        same rows under the same key replaces the shard instead of storing its rows twice), else random.
        """
        if table.num_rows == 0:
            return None
        if key is not None and not re.fullmatch(r"[0-9a-f]{8,64}", key):
            raise StoreError(f"{self.root.uri}/{self.name}: shard key {key!r} is not 8-64 hex digits")
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        name = f"part-{key or uuid.uuid4().hex}.parquet"
        self.root.publish_bytes(join(self.name, name), sink.getvalue().to_pybytes())
        return join(self.dir, name)

    def read_raw(self, columns: list[str] | None = None) -> pa.Table | None:
        """Every stored row, failed attempts included, or None when nothing is stored."""
        paths = self.shard_paths()
        if not paths:
            return None
        try:
            tables = [self._read_shard(p, columns) for p in paths]
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self.root.uri}/{self.name}: cannot read shards: {exc}") from exc
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except pa.ArrowException as exc:  # a shard of another schema (another version, a foreign file)
            raise StoreError(f"{self.root.uri}/{self.name}: shards do not share one schema: {exc}") from exc

    def _read_shard(self, path: str, columns: list[str] | None) -> pa.Table:
        """One shard's columns; a column an older shard lacks (added later) reads as null."""
        if columns is None:
            return pq.read_table(path, filesystem=self.root.fs)
        present = set(pq.read_schema(path, filesystem=self.root.fs).names)
        table = pq.read_table(path, filesystem=self.root.fs, columns=[c for c in columns if c in present])
        for name in columns:
            if name not in present:
                table = table.append_column(name, pa.nulls(table.num_rows))
        return table

    def read(self, columns: list[str] | None = None) -> pa.Table | None:
        """One row per row_id: the successful attempt if any, else the latest failed one."""
        table = self.read_raw(columns)
        if table is None:
            return None
        return latest_per_row(table)

    def done_row_ids(self) -> set[str]:
        """Row ids with a stored successful result: these are never generated again."""
        table = self.read_raw(["row_id", "error"])
        if table is None:
            return set()
        ok = pc.is_null(table["error"])
        return set(table.filter(ok)["row_id"].to_pylist())

    def truncated_limits(self) -> dict[str, int]:
        """row_id -> the largest max_tokens a `reasoning truncated` failure was stored with.

        Such a row is not retried at the same limit (thinking would run out again, and be paid
        for again); a request with a larger max_tokens retries it.
        """
        from valuelex.engines.reasoning import TRUNCATED

        table = self.read_raw(["row_id", "error", "max_tokens"])
        if table is None:
            return {}
        errors = pc.fill_null(table["error"].cast(pa.string()), "")
        hit = table.filter(pc.starts_with(errors, TRUNCATED))
        limits: dict[str, int] = {}
        for row_id, limit in zip(hit["row_id"].to_pylist(), hit["max_tokens"].to_pylist(), strict=True):
            limits[row_id] = max(limits.get(row_id, 0), int(limit or 0))
        return limits


def latest_per_row(table: pa.Table) -> pa.Table:
    """Deduplicate attempts: keep a successful row per row_id, else the last failure."""
    if "error" not in table.column_names:
        keep = _last_index_per_key(table["row_id"].to_pylist(), [True] * table.num_rows)
    else:
        keep = _last_index_per_key(table["row_id"].to_pylist(), pc.is_null(table["error"]).to_pylist())
    return table.take(pa.array(sorted(keep)))


def _last_index_per_key(keys: Iterable[str], ok: list[bool]) -> list[int]:
    chosen: dict[str, tuple[bool, int]] = {}
    for index, (key, good) in enumerate(zip(keys, ok, strict=True)):
        previous = chosen.get(key)
        if previous is None or not previous[0]:  # the first success wins over everything later
            chosen[key] = (good, index)
    return [index for _, index in chosen.values()]
