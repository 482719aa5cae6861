"""The chat playground: pick a model and personality, set sampling, talk; answers stream in.

With htmx the POST returns the new exchange (the user's turn and an assistant turn that
streams over SSE, see `streams`). Without JavaScript the same form posts to the same URL and
gets the whole page back with the finished answer. The conversation lives in the page: every
turn carries hidden `history_role`/`history_text` inputs bound to the form (`form="chat-form"`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..bindings import ChatMessage
from ..keys import GENERATION, PERSONALITIES, REGISTRY, WEB_STREAMS
from ..listing import gather_models
from ..security.auth import requires
from ..service.prepared import Prepared
from .catalog import choices, offers_default
from .forms import ChatForm, read_page_form
from .render import is_htmx, page_handler, render

routes = web.RouteTableDef()
SAMPLING = ("temperature", "max_tokens", "top_p", "top_k", "seed")


@routes.get("/playground", name="playground")
@requires("user")
async def playground(request: web.Request) -> web.Response:
    """The playground starts with chat."""
    raise web.HTTPFound("/playground/chat")


@routes.get("/playground/chat", name="chat")
@requires("user")
@page_handler
async def chat_page(request: web.Request) -> web.Response:
    """The chat playground, empty (`?personality=` and `?model=` preselect)."""
    form = {key: request.query[key] for key in ("model", "personality") if key in request.query}
    return await render(request, "chat.html", "_chat.html", await _context(request, form))


@routes.get("/playground/chat/welcome", name="chat-welcome")
@requires("user")
@page_handler
async def chat_welcome(request: web.Request) -> web.Response:
    """The chosen personality's welcome message (the playground swaps it in on a change)."""
    name = request.query.get("personality", "")
    if not is_htmx(request):  # only the playground's select asks for the bare message
        raise web.HTTPFound(request.app.router["chat"].url_for().with_query(personality=name))
    chosen = request.app[PERSONALITIES].by_name.get(name)
    welcome = chosen.welcome_message if chosen else ""
    return await render(request, "_welcome.html", "_welcome.html", {"welcome": welcome})


async def _context(request: web.Request, form: dict[str, Any]) -> dict[str, Any]:
    listings = await gather_models(request.app[REGISTRY])
    store = request.app[PERSONALITIES]
    chosen = store.by_name.get(form.get("personality") or "")
    groups = choices(listings, "ttt")
    return {
        "welcome": chosen.welcome_message if chosen else "",
        "form": form,
        "choices": groups,
        "offer_default": await offers_default(request.app[REGISTRY], groups, "ttt"),
        "personalities": sorted(store.by_name),
        "turns": [],
    }


@routes.post("/playground/chat")
@requires("user", generates=True)
@page_handler
async def chat_send(request: web.Request) -> web.Response:
    """Send a prompt: stream the answer (htmx) or answer in a new page (no JavaScript)."""
    form = await read_page_form(request, ChatForm)
    prepared = await prepare_chat(request, form)
    history = [
        {"role": role, "text": text}
        for role, text in zip(form["history_role"], form["history_text"], strict=True)
    ]
    user_turn = {"role": "user", "text": form["prompt"]}
    if is_htmx(request):
        entry = request.app[WEB_STREAMS].add(prepared, "chat")
        streaming: dict[str, Any] = {
            "role": "assistant",
            "stream_id": entry.id,
            "target": prepared.target.ref,
        }
        return await render(
            request, "chat.html", "_chat_exchange.html", {"turns": [user_turn, streaming]}
        )
    prepared, result = await request.app[GENERATION].run(prepared)
    text = next((o for o in result.outputs if o.type == "text"), None)
    assistant: dict[str, Any] = {
        "role": "assistant",
        "text": text.text if text else "",
        "thoughts": text.thoughts if text else None,
        "target": prepared.target.ref,
        "usage": result.usage,
        "finish_reason": result.finish_reason,
    }
    context = await _context(request, {**form, "prompt": ""})
    context["turns"] = [*history, user_turn, assistant]
    return await render(request, "chat.html", "_chat.html", context)


async def prepare_chat(request: web.Request, form: dict[str, Any]) -> Prepared:
    """Resolve the target and build the generation through the one GenerationService path."""
    instance, _, model = (form["model"] or "").partition("/")
    target = await request.app[REGISTRY].resolve("ttt", instance or None, model or None)
    messages = []
    if form["system_prompt"].strip():
        messages.append(ChatMessage("system", form["system_prompt"]))
    for role, text in zip(form["history_role"], form["history_text"], strict=True):
        messages.append(ChatMessage(role, text))
    messages.append(ChatMessage("user", form["prompt"]))
    parameters = {key: form[key] for key in SAMPLING if form[key] is not None}
    return await request.app[GENERATION].prepare(
        face="web",
        generation_type="ttt",
        target=target,
        messages=messages,
        parameters=parameters,
        personality=form["personality"],
    )
