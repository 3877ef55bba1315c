"""A fake OpenAI Batch API on 127.0.0.1, protocol-faithful enough for the openai client.

Files: ``POST /v1/files`` (multipart: ``purpose``, ``file``), ``GET /v1/files/{id}`` and
``/v1/files/{id}/content``. Batches: ``POST /v1/batches`` (``input_file_id``, ``endpoint``,
``completion_window``), ``GET /v1/batches/{id}``, ``GET /v1/batches`` (list, newest first),
``POST /v1/batches/{id}/cancel``. A batch moves one state per retrieve: validating -> in_progress
-> its end (``completed``; or the next entry of `fates`: ``expired:<k>`` answers only the first k
lines, ``failed`` answers none, with a validation error). While `hold` is set a batch stays
in_progress (a test kills its driver then). Each answered line is what the fault server answers
(content ``values for <prompt>`` or `respond(prompt)`, usage 5 + 4 tokens); `bad_lines` lists prompts answered with a
400 line instead. The server counts what it was sent: `created` batches and `submitted` request
ids (custom_id -> times submitted).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from email.parser import BytesParser
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeBatchServer:
    def __init__(self, fates: list[str] | None = None, bad_lines: set[str] | None = None, respond: Any = None):
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.fates = list(fates or [])  # end state of each batch in creation order (default: completed)
        self.bad_lines = bad_lines or set()
        self.respond = respond  # prompt -> the content of its answer (a fake judge)
        self.hold = threading.Event()
        self.created = 0
        self.submitted: Counter[str] = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.route(self, "GET", b"")

            def do_POST(self) -> None:
                server.route(self, "POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeBatchServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- routing ---------------------------------------------------------------------------------

    def route(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        parts = handler.path.split("?")[0].strip("/").split("/")  # v1, files|batches, id?, action?
        with self.lock:
            if method == "POST" and parts == ["v1", "files"]:
                return self._send(handler, 200, self._upload(handler.headers["Content-Type"], body))
            if method == "GET" and parts[:2] == ["v1", "files"] and len(parts) >= 3:
                entry = self.files.get(parts[2])
                if entry is None:
                    return self._send(
                        handler, 404, {"error": {"message": "no such file", "type": "invalid_request_error"}}
                    )
                if len(parts) == 4 and parts[3] == "content":
                    return self._send_raw(handler, 200, entry["data"], "application/octet-stream")
                return self._send(handler, 200, entry["object"])
            if method == "POST" and parts == ["v1", "batches"]:
                return self._send(handler, 200, self._create(json.loads(body)))
            if method == "GET" and parts == ["v1", "batches"]:
                data = sorted(self.batches.values(), key=lambda b: -b["created_at"])
                return self._send(
                    handler, 200, {"object": "list", "data": data, "first_id": None, "last_id": None, "has_more": False}
                )
            if parts[:2] == ["v1", "batches"] and len(parts) >= 3 and parts[2] in self.batches:
                batch = self.batches[parts[2]]
                if method == "POST" and parts[3:] == ["cancel"]:
                    batch["status"] = "cancelled"
                    batch["cancelled_at"] = int(time.time())
                elif method == "GET":
                    self._advance(batch)
                return self._send(handler, 200, batch)
        return self._send(handler, 404, {"error": {"message": f"no route {method} {handler.path}", "type": "x"}})

    # --- files and batches -------------------------------------------------------------------------

    def _new_file(self, data: bytes, purpose: str, filename: str) -> dict[str, Any]:
        file_id = f"file-{len(self.files) + 1}"
        obj = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[file_id] = {"object": obj, "data": data}
        return obj

    def _upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        message = BytesParser(policy=default_policy).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = (part.get_filename(), part.get_payload(decode=True))
        filename, data = fields["file"]
        return self._new_file(data, fields["purpose"][1].decode(), filename or "upload.jsonl")

    def _create(self, request: dict[str, Any]) -> dict[str, Any]:
        self.created += 1
        lines = [json.loads(x) for x in self.files[request["input_file_id"]]["data"].decode().splitlines() if x]
        self.submitted.update(line["custom_id"] for line in lines)
        batch_id = f"batch_{self.created}"
        now = int(time.time())
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": request["endpoint"],
            "errors": None,
            "input_file_id": request["input_file_id"],
            "completion_window": request["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now + self.created,
            "in_progress_at": None,
            "expires_at": now + 86400,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": None,
            "_fate": self.fates.pop(0) if self.fates else "completed",
            "_lines": lines,
        }
        self.batches[batch_id] = batch
        return self._public(batch)

    def _advance(self, batch: dict[str, Any]) -> None:
        """One state forward per retrieve (in_progress stays while `hold` is set)."""
        now = int(time.time())
        if batch["status"] == "validating":
            if batch["_fate"] == "failed":
                batch.update(
                    status="failed",
                    failed_at=now,
                    errors={
                        "object": "list",
                        "data": [
                            {"code": "invalid_request", "message": "scheduled failure", "param": None, "line": None}
                        ],
                    },
                )
            else:
                batch.update(status="in_progress", in_progress_at=now)
        elif batch["status"] == "in_progress" and not self.hold.is_set():
            fate = batch["_fate"]
            lines = batch["_lines"][: int(fate.split(":")[1])] if fate.startswith("expired") else batch["_lines"]
            self._finish(batch, lines)
            batch.update(status="expired" if fate.startswith("expired") else "completed")
            batch["expired_at" if fate.startswith("expired") else "completed_at"] = now

    def _finish(self, batch: dict[str, Any], lines: list[dict[str, Any]]) -> None:
        good, bad = [], []
        for n, line in enumerate(lines):
            body = line["body"]
            prompt = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
            if prompt in self.bad_lines:
                bad.append(
                    {
                        "id": f"req_{n}",
                        "custom_id": line["custom_id"],
                        "response": {
                            "status_code": 400,
                            "request_id": f"r{n}",
                            "body": {"error": {"message": "scheduled bad line", "type": "invalid_request_error"}},
                        },
                        "error": None,
                    }
                )
                continue
            text = self.respond(prompt) if self.respond else f"values for {prompt}"
            usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
            if "messages" in body:
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "usage": usage,
                    "choices": [
                        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                    ],
                }
            else:
                reply = {
                    "id": "x",
                    "object": "text_completion",
                    "created": 0,
                    "model": body["model"],
                    "usage": usage,
                    "choices": [{"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}],
                }
            good.append(
                {
                    "id": f"req_{n}",
                    "custom_id": line["custom_id"],
                    "response": {"status_code": 200, "request_id": f"r{n}", "body": reply},
                    "error": None,
                }
            )
        if good:
            batch["output_file_id"] = self._new_file(
                "".join(json.dumps(x) + "\n" for x in good).encode(), "batch_output", "output.jsonl"
            )["id"]
        if bad:
            batch["error_file_id"] = self._new_file(
                "".join(json.dumps(x) + "\n" for x in bad).encode(), "batch_output", "errors.jsonl"
            )["id"]
        batch["request_counts"] = {"total": len(batch["_lines"]), "completed": len(good), "failed": len(bad)}

    # --- replies ---------------------------------------------------------------------------------

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _send(self, handler: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        if payload.get("object") == "batch":
            payload = self._public(payload)
        elif payload.get("object") == "list":
            payload = {**payload, "data": [self._public(b) for b in payload["data"]]}
        self._send_raw(handler, status, json.dumps(payload).encode(), "application/json")

    @staticmethod
    def _send_raw(handler: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
