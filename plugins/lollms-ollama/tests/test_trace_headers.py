"""The ollama binding passes the request id and W3C trace context on (issue 18, tracing).

The backend is a real lollms-server process answering Ollama's API, with tracing on towards a
real OTLP receiver: its request span must be the child of the caller's `traceparent` and carry
the caller's request id. The binding runs here inside a request's trace with tracing off, so
the `traceparent` it sends is the caller's, passed on unchanged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lollms_ollama import OllamaBinding

from lollms_server.bindings import ChatMessage, GenerationRequest
from lollms_server.testing import lollms_process, started_binding
from lollms_server.testing.otlp import ReceivedSpan, otlp_receiver
from lollms_server.trace import end_trace, start_trace

TRACE = "1f2e3d4c5b6a79881f2e3d4c5b6a7988"
PARENT = "a1b2c3d4e5f60718"


async def test_request_id_and_traceparent_reach_the_backend(tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as env, otlp_receiver() as receiver:
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        config = (
            '[bindings.echo]\ntype = "echo"\n[tracing]\nenabled = true\n'
            f'endpoint = "{receiver.endpoint}"\nservice_name = "backend"\n'
        )
        with lollms_process(tmp_path / "backend", config) as backend:
            async with started_binding(OllamaBinding, "up", {"host": backend.url}) as binding:
                _trace, token = start_trace("ollama-hop", f"00-{TRACE}-{PARENT}-01")
                try:
                    messages = (ChatMessage("user", "hello"),)
                    await binding.generate(GenerationRequest("ttt", "echo/echo", messages))
                finally:
                    end_trace(token)

            def served(spans: list[ReceivedSpan]) -> bool:
                return any(s.trace_id == TRACE and s.kind == "server" for s in spans)

            spans = [s for s in receiver.wait_for(served) if s.trace_id == TRACE]
    chat = next(s for s in spans if s.kind == "server")
    assert chat.name == "POST /api/chat"
    assert chat.parent_id == PARENT
    assert chat.attributes["lollms.request_id"] == "ollama-hop"
