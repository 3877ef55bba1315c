"""An OpenAI-compatible server on 127.0.0.1 that misbehaves on a schedule, for fault tests.

Each prompt's text (or a rule for that exact prompt) picks its fate: ``fail:<mode>:<n>`` fails
its first n attempts with that mode (429, 500, timeout, badjson, empty) and then answers;
``fail:<mode>:always`` never answers well; `always` gives every prompt one mode. Mode 401 is an
endpoint that refuses the key and echoes it (the Authorization header in the error's message and
in a response header, and `echo` text after it: what a careless proxy leaks).
The server counts attempts per prompt so tests can check that retries happened and were bounded,
can answer slowly (`delay`, so a test can act while a run is under way) and records the
Authorization headers it was sent (so a test can prove an API key was used, and used only here).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultServer:
    def __init__(self, timeout_sleep: float = 3.0, rules: dict[str, str] | None = None, delay: float = 0.0,
                 always: str | None = None, echo: str = ""):
        self.rules = rules or {}  # exact prompt -> "mode:count" (the same as a `fail:` prefix)
        self.always = always  # a mode for every prompt, e.g. "401" (as `fail:401:always` on each)
        self.echo = echo  # extra text a 401 answer leaks
        self.attempts: Counter[str] = Counter()
        self.healthy = False  # when True every request succeeds (the operator fixed the endpoint)
        self.timeout_sleep = timeout_sleep
        self.delay = delay  # seconds every request waits before its answer
        self.authorizations: Counter[str] = Counter()  # Authorization header values received
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"] if "messages" in body else body["prompt"]
                with server.lock:
                    server.attempts[prompt] += 1
                    attempt = server.attempts[prompt]
                    server.authorizations[self.headers.get("Authorization", "")] += 1
                if server.delay:
                    time.sleep(server.delay)
                server.answer(self, body, prompt, attempt, self.headers.get("Authorization", ""))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, body: dict, prompt: str, attempt: int,
               authorization: str = "") -> None:
        mode, failures = "ok", 0
        rule = self.rules.get(prompt) or (prompt.removeprefix("fail:") if prompt.startswith("fail:") else None)
        rule = f"{self.always}:always" if self.always else rule
        if rule and not self.healthy:
            mode, count = rule.split(":", 1)
            failures = 10**9 if count == "always" else int(count)
        if attempt > failures:
            mode = "ok"
        if mode == "timeout":
            time.sleep(self.timeout_sleep)
            mode = "ok"  # too late: the client has given up
        if mode == "401":
            message = f"Incorrect API key provided: {authorization}. {self.echo}".strip()
            self._send(handler, 401, {"error": {"message": message, "type": "invalid_request_error",
                                                "code": "invalid_api_key"}},
                       {"X-Echo-Authorization": authorization, "WWW-Authenticate": f"Bearer realm={authorization!r}"})
        elif mode in ("429", "500"):
            self._send(handler, int(mode), {"error": {"message": f"scheduled {mode}", "type": "fault"}})
        elif mode == "badjson":
            self._send_raw(handler, 200, b'{"id": "x", "choices": [{"message": {"content": "tru')
        elif mode == "empty":
            self._send(handler, 200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": None}}]})
        else:
            text = f"values for {prompt} (attempt {attempt})"
            usage = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
            if "messages" in body:
                choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [choice], "usage": usage}
            else:
                choice = {"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}
                payload = {"id": "x", "object": "text_completion", "created": 0, "model": body["model"],
                           "choices": [choice], "usage": usage}
            self._send(handler, 200, payload)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: dict, headers: dict | None = None) -> None:
        FaultServer._send_raw(handler, status, json.dumps(payload).encode(), headers)

    @staticmethod
    def _send_raw(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict | None = None) -> None:
        try:
            handler.send_response(status)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left
