"""A recording stand-in for a hosted or local OpenAI-compatible provider, as its docs define it.

`python standin.py --provider NAME --port PORT` serves the provider's chat, models and (OpenAI)
images routes under the provider's own path prefix, refuses what the provider refuses (a
missing key, request fields its API does not define: 400, or 422 for Mistral), answers in the
provider's documented response shape (Mistral: usage in the last stream chunk, no
`stream_options`; Groq: `x_groq.usage`), refuses a `tool` message that answers no call of the
assistant message before it, and records every request. `GET /__recorded` returns
the records (method, path, Authorization header, JSON body).
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

#: OpenAI's documented chat request fields (platform.openai.com/docs/api-reference/chat/create).
OPENAI_CHAT = frozenset(
    [
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "store",
        "metadata",
        "reasoning_effort",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "stream",
        "stream_options",
        "modalities",
        "audio",
        "prediction",
        "service_tier",
        "web_search_options",
        "verbosity",
    ]
)
#: A 1x1 PNG: what the images route returns as b64_json.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()


@dataclass(frozen=True)
class Provider:
    """What one provider's docs define: where, which fields, which error, which shapes."""

    prefix: str
    chat_fields: frozenset[str] | None  # None: a lenient server that ignores unknown fields
    needs_key: bool = True
    unknown_status: int = 400
    stream_options: bool = True  # accepts `stream_options`; otherwise usage always comes last
    groq_usage: bool = False
    images: bool = False
    model_ids: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


PROVIDERS = {
    "openai": Provider(
        "/v1", OPENAI_CHAT, images=True, model_ids=("gpt-4o-mini", "dall-e-3", "tts-1")
    ),
    # ai.google.dev/gemini-api/docs/openai: chat, streaming, tools, embeddings, reasoning_effort
    "gemini": Provider(
        "/v1beta/openai",
        frozenset(
            [
                "model",
                "messages",
                "temperature",
                "top_p",
                "max_tokens",
                "max_completion_tokens",
                "stop",
                "seed",
                "n",
                "presence_penalty",
                "frequency_penalty",
                "reasoning_effort",
                "tools",
                "tool_choice",
                "response_format",
                "stream",
                "stream_options",
                "extra_body",
            ]
        ),
        model_ids=("models/gemini-2.5-flash",),
    ),
    # console.groq.com/docs/openai: not supported: logprobs, logit_bias, top_logprobs, n > 1
    "groq": Provider(
        "/openai/v1",
        OPENAI_CHAT - {"logprobs", "logit_bias", "top_logprobs"},
        groq_usage=True,
        model_ids=("llama-3.3-70b-versatile", "llama-3.1-8b-instant"),
    ),
    # docs.mistral.ai/api (the fields of its SDK's ChatCompletionRequest); unknown fields: 422
    "mistral": Provider(
        "/v1",
        frozenset(
            [
                "model",
                "messages",
                "temperature",
                "top_p",
                "max_tokens",
                "stream",
                "stop",
                "random_seed",
                "response_format",
                "tools",
                "tool_choice",
                "presence_penalty",
                "frequency_penalty",
                "n",
                "prediction",
                "parallel_tool_calls",
                "prompt_mode",
                "safe_prompt",
            ]
        ),
        unknown_status=422,
        stream_options=False,
        model_ids=("mistral-small-latest", "mistral-large-latest"),
    ),
    "lmstudio": Provider("/v1", None, needs_key=False, model_ids=("qwen2.5-7b-instruct",)),
    "vllm": Provider("/v1", None, model_ids=("Qwen/Qwen2.5-7B-Instruct",)),
    "llamacpp-server": Provider("/v1", None, model_ids=("model",)),
    "localai": Provider("/v1", None, model_ids=("llama-3.2-1b-instruct",)),
}


class StandIn:
    """The routes of one provider, recording each request."""

    def __init__(self, provider: Provider, key: str | None) -> None:
        self.provider = provider
        self.key = key
        self.records: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application()
        prefix = self.provider.prefix
        app.router.add_get("/__recorded", self.recorded)
        app.router.add_get(f"{prefix}/models", self.models)
        app.router.add_post(f"{prefix}/chat/completions", self.chat)
        if self.provider.images:
            app.router.add_post(f"{prefix}/images/generations", self.images)
        return app

    async def recorded(self, request: web.Request) -> web.Response:
        return web.json_response(self.records)

    async def _record(self, request: web.Request) -> tuple[Any, web.Response | None]:
        body = await request.json() if request.can_read_body else None
        self.records.append(
            {
                "method": request.method,
                "path": request.path,
                "authorization": request.headers.get("Authorization"),
                "body": body,
            }
        )
        if self.provider.needs_key and request.headers.get("Authorization") != f"Bearer {self.key}":
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            return body, web.json_response({"error": error}, status=401)
        return body, None

    async def models(self, request: web.Request) -> web.Response:
        _, refused = await self._record(request)
        if refused:
            return refused
        data = [
            {"id": model, "object": "model", "created": 1700000000, "owned_by": "standin"}
            for model in self.provider.model_ids
        ]
        return web.json_response({"object": "list", "data": data})

    def _unknown(self, body: dict[str, Any]) -> web.Response | None:
        allowed = self.provider.chat_fields
        unknown = sorted(set(body) - allowed) if allowed is not None else []
        if not unknown:
            return None
        if self.provider.unknown_status == 422:  # Mistral: a validation error per field
            detail = [
                {
                    "type": "extra_forbidden",
                    "loc": ["body", name],
                    "msg": "Extra inputs are not permitted",
                }
                for name in unknown
            ]
            return web.json_response({"object": "error", "message": {"detail": detail}}, status=422)
        error = {
            "message": f"Unrecognized request argument supplied: {', '.join(unknown)}",
            "type": "invalid_request_error",
            "param": unknown[0],
            "code": None,
        }
        return web.json_response({"error": error}, status=400)

    def _unanswerable(self, messages: list[dict[str, Any]]) -> web.Response | None:
        """OpenAI's 400 for a `tool` message whose `tool_call_id` is no call of the assistant
        message before it (every provider here checks the link)."""
        calls: set[str] = set()
        for message in messages:
            if message.get("role") == "assistant":
                calls = {call.get("id") for call in message.get("tool_calls") or ()}
            elif message.get("role") == "tool" and message.get("tool_call_id") not in calls:
                error = {
                    "message": "Invalid parameter: messages with role 'tool' must be a response "
                    "to a preceeding message with 'tool_calls'.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": None,
                }
                return web.json_response({"error": error}, status=400)
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, refused = await self._record(request)
        if refused:
            return refused
        refused = self._unknown(body) or self._unanswerable(body.get("messages") or [])
        if refused:
            return refused
        usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
        head = {"id": "chatcmpl-1", "created": int(time.time()), "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Hello there"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            answer = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        chunk = {**head, "object": "chat.completion.chunk"}
        events = []
        for index, piece in enumerate(("Hello", " there")):
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            events.append(
                {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            )
        last: dict[str, Any] = {
            **chunk,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        }
        if not self.provider.stream_options:
            last["usage"] = usage  # Mistral: usage always rides on the last chunk
        if self.provider.groq_usage:
            last["x_groq"] = {"id": "req_1", "usage": usage}
        events.append(last)
        if self.provider.stream_options and (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async def images(self, request: web.Request) -> web.Response:
        """DALL-E 3 as documented: n 1, three sizes, standard|hd, vivid|natural."""
        body, refused = await self._record(request)
        if refused:
            return refused
        allowed = {"model", "prompt", "n", "size", "quality", "style", "response_format", "user"}
        problems = sorted(set(body) - allowed)
        if body.get("n", 1) != 1:
            problems.append("n must be 1 for dall-e-3")
        if body.get("size", "1024x1024") not in ("1024x1024", "1792x1024", "1024x1792"):
            problems.append(f"size {body.get('size')} is not supported by dall-e-3")
        if body.get("response_format", "url") not in ("url", "b64_json"):
            problems.append("response_format must be url or b64_json")
        if problems:
            error = {"message": "; ".join(problems), "type": "invalid_request_error"}
            return web.json_response({"error": error}, status=400)
        item: dict[str, Any] = {"revised_prompt": body["prompt"]}
        if body.get("response_format") == "b64_json":
            item["b64_json"] = PNG
        else:
            item["url"] = "https://example.invalid/image.png"
        return web.json_response({"created": int(time.time()), "data": [item]})


def main() -> None:
    """Serve one provider on 127.0.0.1."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", choices=sorted(PROVIDERS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key", default=None)
    args = parser.parse_args()
    standin = StandIn(PROVIDERS[args.provider], args.key)
    web.run_app(standin.app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
