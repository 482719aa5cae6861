"""Mixed traffic for bench/loadtest.py: run by `locust --headless -f bench/locustfile.py`.

Each user sends, with a short think time: whole and streamed chats to the `mock` instance (an
OpenAI upstream of known latency), embeddings, the model listing, the dashboard page and an
image through echo. The key comes from `LOLLMS_LOAD_KEY`. Every request carries its own
`X-Request-Id`; when `LOLLMS_LOAD_RECORD` names a file, one JSON line per request is written
there at the end (kind, request id, start and end times, status, ok, the server's
`X-Lollms-Overhead-Ms`), for the driver's checks (audit rows, failures in flight on a killed
replica, overhead percentiles).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from locust import HttpUser, between, events, task

KEY = os.environ.get("LOLLMS_LOAD_KEY", "")
RECORD = os.environ.get("LOLLMS_LOAD_RECORD", "")
THINK_S = [float(v) for v in os.environ.get("LOLLMS_LOAD_THINK", "0.2,0.6").split(",")]
CHAT_MODEL = "mock/mock"
MESSAGES = [{"role": "user", "content": "Say something short."}]
RECORDS: list[dict[str, Any]] = []


class LollmsUser(HttpUser):
    """One API client with a user key."""

    wait_time = between(THINK_S[0], THINK_S[1])

    def send(self, kind: str, method: str, path: str, body: object = None) -> None:
        """One request, checked and recorded; a stream is read to its end."""
        request_id = uuid.uuid4().hex
        headers = {"Authorization": f"Bearer {KEY}", "X-Request-Id": request_id}
        started = time.time()
        status, ok, overhead, why = 0, False, None, ""
        with self.client.request(
            method, path, json=body, headers=headers, name=kind, catch_response=True
        ) as reply:
            status = reply.status_code
            overhead = reply.headers.get("X-Lollms-Overhead-Ms")
            why = complete(kind, status, reply.text)
            if why:
                reply.failure(why)
            else:
                ok = True
        RECORDS.append(
            {
                "kind": kind,
                "id": request_id,
                "start": started,
                "end": time.time(),
                "status": status,
                "ok": ok,
                "overhead_ms": float(overhead) if overhead else None,
                "why": why[:200],
            }
        )

    @task(4)
    def chat_whole(self) -> None:
        """A whole chat completion."""
        self.send(
            "chat", "POST", "/v1/chat/completions", {"model": CHAT_MODEL, "messages": MESSAGES}
        )

    @task(4)
    def chat_stream(self) -> None:
        """A streamed chat completion, read to `[DONE]`."""
        body = {"model": CHAT_MODEL, "messages": MESSAGES, "stream": True}
        self.send("chat_stream", "POST", "/v1/chat/completions", body)

    @task(2)
    def embeddings(self) -> None:
        """Embeddings through echo."""
        body = {"model": "echo/echo", "input": ["one sentence", "another one"]}
        self.send("embeddings", "POST", "/v1/embeddings", body)

    @task(2)
    def listing(self) -> None:
        """The model listing."""
        self.send("models", "GET", "/v1/models")

    @task(1)
    def page(self) -> None:
        """The dashboard page."""
        self.send("page", "GET", "/")

    @task(1)
    def image(self) -> None:
        """An image through echo (a tiny PNG)."""
        body = {"model": "echo/echo", "prompt": "a red square", "size": "64x64"}
        self.send("image", "POST", "/v1/images/generations", body)


def complete(kind: str, status: int, text: str) -> str:
    """Why an answer is not a complete success ('' when it is)."""
    if status != 200:
        return f"{status}: {text[:160]}"
    if kind == "chat_stream":
        if not text.rstrip().endswith("data: [DONE]") or '"error"' in text:
            return f"stream cut or errored: {text[-160:]!r}"
        return ""
    if kind == "page":
        return "" if "</html>" in text else "page cut"
    try:
        body = json.loads(text)
    except ValueError:
        return f"not JSON: {text[:160]!r}"
    expected = {"chat": "choices", "embeddings": "data", "models": "data", "image": "data"}[kind]
    return "" if body.get(expected) else f"no {expected}: {text[:160]}"


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def write_records(**_: object) -> None:
    """Write every request's record for the driver."""
    if RECORD:
        with open(RECORD, "w", encoding="utf-8") as out:
            for record in RECORDS:
                out.write(json.dumps(record) + "\n")
