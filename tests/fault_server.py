"""An OpenAI-compatible server on 127.0.0.1 that misbehaves on a schedule, for fault tests.

Each prompt's text (or a rule for that exact prompt) picks its fate: ``fail:<mode>:<n>`` fails
its first n attempts with that mode (429, 500, timeout, badjson, empty, trickle: a byte a second,
endless: a chunked body that never ends) and then answers; ``fail:<mode>:always`` never answers
well; `always` gives every prompt one mode. Mode 401 is an endpoint that refuses the key and
echoes it (the Authorization header in the error's message and in a response header, and `echo`
text after it: what a careless proxy leaks). `replies` maps a prompt to the JSON reply it always
gets (odd replies: content parts, a number, token counts of 1e30), until the server is `healthy`.
A stalling reply stops after `stall_s` seconds, when the client leaves, or when the server closes,
so no test thread hangs. `respond` (prompt -> text) writes the content of every good answer: a
fake judge for tests of the judge prompt. `think` (prompt, max_tokens -> (thinking, answer) or
None) plays a reasoning model: ``<think>thinking</think>answer``, one token a word, cut at
max_tokens like a real engine (an unclosed block, finish_reason length) when the thinking is longer;
`reasoning_field` sends the thinking as ``reasoning_content`` instead, as vLLM's parser does.
The server counts attempts per prompt so tests can check that retries happened and were bounded,
can answer slowly (`delay`, so a test can act while a run is under way) and records the
Authorization headers it was sent (so a test can prove an API key was used, and used only here),
and sums the tokens of the good answers it sent (`tokens`: what a provider would bill).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FaultServer:
    def __init__(self, timeout_sleep: float = 3.0, rules: dict[str, str] | None = None, delay: float = 0.0,
                 replies: dict[str, Any] | None = None, stall_s: float = 60.0, always: str | None = None,
                 echo: str = "", respond: Any = None, think: Any = None, reasoning_field: bool = False):
        self.rules = rules or {}  # exact prompt -> "mode:count" (the same as a `fail:` prefix)
        self.replies = replies or {}  # exact prompt -> the JSON body of every reply to it
        self.stall_s = stall_s
        self.closing = threading.Event()
        self.always = always  # a mode for every prompt, e.g. "401" (as `fail:401:always` on each)
        self.echo = echo  # extra text a 401 answer leaks
        self.respond = respond  # prompt -> content of a good answer (default: "values for <prompt> ...")
        self.think = think
        self.reasoning_field = reasoning_field
        self.prompts: list[str] = []  # every prompt received, in order
        self.attempts: Counter[str] = Counter()
        self.healthy = False  # when True every request succeeds (the operator fixed the endpoint)
        self.timeout_sleep = timeout_sleep
        self.delay = delay  # seconds every request waits before its answer
        self.authorizations: Counter[str] = Counter()  # Authorization header values received
        self.tokens = 0  # prompt + completion tokens of every good answer sent (what a provider bills)
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
                    server.prompts.append(prompt)
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
        self.closing.set()
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
        if prompt in self.replies and not self.healthy:
            self._send_raw(handler, 200, json.dumps(self.replies[prompt]).encode())
            return
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
        elif mode == "trickle":
            self._trickle(handler)
        elif mode == "endless":
            self._endless(handler)
        elif mode == "badjson":
            self._send_raw(handler, 200, b'{"id": "x", "choices": [{"message": {"content": "tru')
        elif mode == "empty":
            self._send(handler, 200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                                      "choices": [{"index": 0, "finish_reason": "stop",
                                                   "message": {"role": "assistant", "content": None}}]})
        else:
            text = self.respond(prompt) if self.respond else f"values for {prompt} (attempt {attempt})"
            usage: dict[str, Any] = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
            finish, message = "stop", {"role": "assistant", "content": text}
            thought = self.think(prompt, body.get("max_tokens")) if self.think else None
            if thought is not None:
                finish, message, usage = self._thinking(*thought, int(body.get("max_tokens") or 10**6))
                text = message["content"] or ""
            if "messages" in body:
                choice = {"index": 0, "finish_reason": finish, "message": message}
                payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                           "choices": [choice], "usage": usage}
            else:
                choice = {"index": 0, "finish_reason": finish, "text": text, "logprobs": None}
                payload = {"id": "x", "object": "text_completion", "created": 0, "model": body["model"],
                           "choices": [choice], "usage": usage}
            with self.lock:
                self.tokens += usage["prompt_tokens"] + usage["completion_tokens"]
            self._send(handler, 200, payload)

    def _thinking(self, thinking: str, answer: str, limit: int) -> tuple[str, dict, dict]:
        """A reasoning model's reply, one token a word, cut at `limit` tokens as an engine cuts it."""
        thought, said = thinking.split(), answer.split()
        cut = len(thought) + len(said) > limit
        thought, said = thought[:limit], said[:max(0, limit - len(thought))]
        usage = {"prompt_tokens": 5, "completion_tokens": len(thought) + len(said),
                 "total_tokens": 5 + len(thought) + len(said),
                 "completion_tokens_details": {"reasoning_tokens": len(thought)}}
        closed = len(thought) == len(thinking.split())
        if self.reasoning_field:
            message = {"role": "assistant", "content": " ".join(said) or None, "reasoning_content": " ".join(thought)}
        else:
            content = "<think>" + " ".join(thought) + ("</think>" + " ".join(said) if closed else "")
            message = {"role": "assistant", "content": content}
        return ("length" if cut else "stop"), message, usage

    def _stalling(self) -> Iterator[None]:
        """One step a second (or so) until `stall_s` passes or the server closes."""
        deadline = time.monotonic() + self.stall_s
        while time.monotonic() < deadline and not self.closing.is_set():
            yield

    def _trickle(self, handler: BaseHTTPRequestHandler) -> None:
        """A whole reply's Content-Length, then its bytes one a second: every read succeeds in time."""
        data = b'{"id": "x", "choices": []}' + b" " * 1000
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            for i, _ in zip(range(len(data)), self._stalling(), strict=False):
                handler.wfile.write(data[i:i + 1])
                handler.wfile.flush()
                self.closing.wait(1.0)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _endless(self, handler: BaseHTTPRequestHandler) -> None:
        """A chunked body of whitespace that never ends (HTTP/1.1 framing, no Content-Length)."""
        try:
            handler.protocol_version = "HTTP/1.1"
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(b'1\r\n{\r\n')
            for _ in self._stalling():
                handler.wfile.write(b"1\r\n \r\n")
                handler.wfile.flush()
                self.closing.wait(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass

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
