"""The one generation path every face uses: resolve, apply personality, call, guard, log."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from functools import partial
from typing import Any, TypeVar

from ..bindings import (
    Binding,
    ChatMessage,
    Chunk,
    GenerationRequest,
    InputItem,
    Result,
    result_chunks,
)
from ..circuit import Breakers
from ..drain import Drain
from ..errors import InvalidRequest
from ..guard import expect as expect
from ..guard import expect_result
from ..guard import expect_token_ids as expect_token_ids
from ..guard import guarded as guarded
from ..guard import listed_models as listed_models
from ..metrics import Metrics
from ..offloop import ThreadWork
from ..registry import Registry, Target
from ..resources.lifecycle import Lifecycle
from ..resources.scheduler import (
    ADMIN_PRIORITY,
    NO_TURNS,
    USER_PRIORITY,
    Lane,
    Scheduler,
    Ticket,
    Waiting,
    queued_at,
)
from ..security.audit import AuditLog
from ..security.principal import caller
from ..security.principal import current as current_principal
from ..security.ratelimit import RateLimiter
from ..thinking import ThinkSplitter, split_chunk_thoughts, split_result_thoughts
from ..trace import current_trace, new_id
from ..tracing import first_token, span
from .binding_read import BindingReader
from .functions import FunctionRegistry
from .generation_outcome import Accounted, Outcome
from .generation_stream import ChunkStream
from .personalities import PersonalityStore, apply_personality
from .prepared import Prepared
from .routing import Attempt, attempts
from .workflows import run_workflow, stream_workflow

log = logging.getLogger(__name__)
T = TypeVar("T")
#: what a face asks next of the target that served, from its answer (None: nothing more)
More = Callable[[Prepared, Result], Awaitable[Prepared | None]]
MAX_TOKENS_NAMES = ("max_tokens", "n_predict")  # a request that sets either is not capped


def call_attributes(prepared: Prepared) -> dict[str, str | None]:
    """A binding call's span attributes: instance, model, request id and the caller's key id."""
    principal = current_principal()
    return {
        "lollms.instance": prepared.target.binding.instance_name,
        "lollms.model": prepared.target.model,
        "lollms.request_id": prepared.request.request_id,
        "lollms.key_id": principal.key_id if principal is not None else None,
    }


def new_request_id() -> str:
    """The running HTTP request's id, or a fresh one outside a request."""
    trace = current_trace()
    return trace.request_id if trace else new_id()


class GenerationService:
    """Runs generations against bindings with timeouts, error mapping, limits and audit."""

    def __init__(
        self,
        registry: Registry,
        personalities: PersonalityStore,
        timeout_s: float,
        *,
        audit: AuditLog | None = None,
        limiter: RateLimiter | None = None,
        metrics: Metrics | None = None,
        scheduler: Scheduler | None = None,
        breakers: Breakers | None = None,
        lifecycle: Lifecycle | None = None,
        first_token_timeout_s: float = 0.0,
        functions: FunctionRegistry | None = None,
        drain: Drain | None = None,
    ) -> None:
        self.registry = registry
        self.personalities = personalities
        self.timeout_s = timeout_s
        self.audit = audit
        self.limiter = limiter
        self.metrics = metrics
        self.scheduler = scheduler or Scheduler()
        self.breakers = breakers or Breakers()
        self.lifecycle = lifecycle
        self.first_token_timeout_s = first_token_timeout_s
        self.functions = functions or FunctionRegistry()
        self.drain = drain

    async def prepare(
        self,
        *,
        face: str,
        generation_type: str,
        target: Target,
        messages: Sequence[ChatMessage] = (),
        inputs: Sequence[InputItem] = (),
        parameters: Mapping[str, Any] | None = None,
        personality: str | None = None,
        raw_prompt: bool = False,
        in_script: bool = False,
    ) -> Prepared:
        """Admit a new generation (refused while draining) and build its binding request."""
        if self.drain is not None and not in_script:  # a running script's steps may go on
            self.drain.admit()
        trace = current_trace()
        if trace is not None:
            trace.model = target.model
        chosen = self.personalities.get(personality) if personality else None
        if chosen is not None and chosen.workflow is not None and (parameters or {}).get("tools"):
            raise InvalidRequest(  # its script answers with text: the tools would be dropped
                f"personality {chosen.name!r} runs a script, which answers with text and cannot "
                "take `tools`; its script calls functions itself (context.call_function)",
                param="tools",
            )
        final_messages, params = apply_personality(chosen, messages, parameters or {})
        default_cap = generation_type == "ttt" and not any(
            params.get(name) is not None for name in MAX_TOKENS_NAMES
        )
        if default_cap:
            params = {**params, "max_tokens": target.default_max_tokens}
        keep = params.get("keep_alive")
        if isinstance(keep, (int, float)) and self._kept(float(keep)) != keep:
            params = {**params, "keep_alive": self._kept(float(keep))}  # a binding sends it on
        request = GenerationRequest(
            generation_type=generation_type,
            model=target.model,
            messages=final_messages,
            inputs=tuple(inputs),
            parameters=params,
            request_id=new_request_id(),
            raw_prompt=raw_prompt,
        )
        target.binding.check_input_roles(request)
        if type(target.binding).check_request is not Binding.check_request:  # no timer for none
            await guarded(target.binding, target.binding.check_request(request), self.timeout_s)
        return Prepared(target, request, chosen, face, time.monotonic(), default_cap, in_script)

    async def generate(self, prepared: Prepared) -> Result:
        """Run to completion on the target or, before any byte, on its fallbacks in turn."""
        return (await self.run(prepared))[1]

    async def run(self, prepared: Prepared, more: More | None = None) -> tuple[Prepared, Result]:
        """Like `generate`, with the attempt that served (its target, its request). With
        `more`, the binding is asked again, in the same slots, for the request `more` makes of
        each answer, until it makes none (a face's batches); the last answer is returned."""
        if prepared.scripted:
            return prepared, await run_workflow(self, prepared, self.functions)
        async with self.accounted(prepared) as outcome:
            for attempt, call in self._attempts(prepared):
                outcome.served = call
                slot = self._slot(call, work := ThreadWork())
                async with attempt, slot as ticket:
                    async for _position in self._turns(slot.lane, ticket):
                        pass
                    await self._load(call)
                    try:
                        result = await self._whole(call, outcome, work)
                        while more is not None and (again := await more(call, result)):
                            attempt.committed = True  # what was made is not made elsewhere
                            call, result = again, await self._whole(again, outcome, work)
                        return call, result
                    finally:
                        self._release(call, work)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def stream(self, prepared: Prepared) -> ChunkStream:
        """The binding's chunks (thoughts split out); closing them closes the binding's.

        Before the first chunk a failing target hands over to its fallbacks; after it, an
        error ends the stream (a half-sent answer is never replayed elsewhere). The stream's
        `served` names the attempt its chunks come from.
        """
        if prepared.scripted:
            return ChunkStream(prepared, lambda _: stream_workflow(self, prepared, self.functions))
        return ChunkStream(prepared, lambda stream: self._stream(prepared, stream))

    async def _stream(self, prepared: Prepared, stream: ChunkStream) -> AsyncGenerator[Chunk, None]:
        # one generator from the binding's stream to the face: every frame costs each chunk
        async with self.accounted(prepared) as outcome:
            for attempt, call in self._attempts(prepared):
                outcome.served = stream.served = call
                slot = self._slot(call, work := ThreadWork())
                async with attempt, slot as ticket:
                    async for position in self._turns(slot.lane, ticket):
                        yield queued_at(slot.lane, position)
                    splitter = ThinkSplitter()
                    await self._load(call)
                    try:
                        binding = call.target.binding
                        if "stream" not in binding.capabilities:  # the answer as one piece
                            for piece in result_chunks(await self._whole(call, outcome, work)):
                                attempt.committed = True
                                yield piece
                            return
                        with span("binding.stream", call_attributes(call)) as traced:
                            async with BindingReader(
                                binding,
                                call.request,
                                self.timeout_s,
                                self.first_token_timeout_s,
                                work=work,
                            ) as reader:
                                while (chunk := await reader.read()) is not None:
                                    outcome.usage = chunk.usage or outcome.usage
                                    if outcome.first_token_s is None and (
                                        chunk.content or chunk.output
                                    ):
                                        outcome.first_token_s = call.elapsed_s
                                        first_token(traced, reader.first_token())
                                    if chunk.type == "chunk":
                                        attempt.committed = True
                                    yield split_chunk_thoughts(splitter, chunk)
                    finally:
                        self._release(call, work)
                    answer, thoughts = splitter.flush()
                    if answer or thoughts:
                        yield Chunk(content=answer, thoughts=thoughts)
                    return

    async def _whole(self, prepared: Prepared, outcome: Outcome, work: ThreadWork) -> Result:
        """The binding's whole answer (`generate`), thoughts split out; the threads it starts
        are `work`'s."""
        binding = prepared.target.binding
        outcome.asked_whole = True
        with work, span("binding.generate", call_attributes(prepared)):
            result = await guarded(binding, binding.generate(prepared.request), self.timeout_s)
        result = expect_result(binding, result)
        outcome.usage = result.usage
        return split_result_thoughts(result)

    def _attempts(self, prepared: Prepared) -> Iterator[tuple[Attempt, Prepared]]:
        """One Attempt per candidate target whose circuit lets it try (`routing.attempts`),
        with the request as sent there."""
        for attempt, target in attempts(
            prepared.target, self.scheduler, self.breakers, self.metrics
        ):
            trace = current_trace()
            if trace is not None:
                trace.model = target.model
            yield attempt, prepared.on(target)

    async def model_call(
        self,
        target: Target,
        call: Callable[[Target], Awaitable[T]],
        timeout_s: float | None = None,
        *,
        texts: Sequence[str] = (),
        keep_alive: float | None = None,
        needs: str | None = None,
    ) -> tuple[Target, T]:
        """A binding call that needs the model but is no generation (tokenize, embed), with
        the target that served it: a route's next target serves when one fails (as for
        generations, through the circuit breakers), each model loaded within the lifecycle's
        books first (budgets, max loaded, keep_alive). It takes one of the key's concurrent
        slots (the backend works for it); with `texts` (embeddings) it also charges them to
        its token budget (`RateLimiter.text_work`); `keep_alive` (seconds) as a generation's;
        a model listed without the capability it `needs` is refused before it loads."""
        accounting: contextlib.AbstractAsyncContextManager[None] = contextlib.nullcontext()
        if self.limiter is not None:
            who = caller()
            accounting = self.limiter.text_work(who, texts) if texts else self.limiter.slot(who)
        lifecycle, kept = self.lifecycle, self._kept(keep_alive)
        async with accounting:
            for attempt, served in attempts(target, self.scheduler, self.breakers, self.metrics):
                held = (
                    lifecycle.in_use(served, kept, needs) if lifecycle else contextlib.nullcontext()
                )
                async with attempt, held:
                    return served, await guarded(
                        served.binding, call(served), timeout_s or self.timeout_s
                    )
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def _load(self, prepared: Prepared) -> None:
        """The target's model loaded for the call; `_release` (in a `finally`) once it ends."""
        if self.lifecycle is not None:
            await self.lifecycle.ensure_loaded(prepared.target)

    def _release(self, prepared: Prepared, work: ThreadWork) -> None:
        """The end of a call `_load` let run: the model's keep_alive starts once its threads end."""
        if self.lifecycle is not None:
            keep = prepared.request.parameters.get("keep_alive")
            seconds = float(keep) if isinstance(keep, (int, float)) else None
            work.then(partial(self.lifecycle.release, prepared.target, self._kept(seconds)))

    def _kept(self, seconds: float | None) -> float | None:
        """A request's keep_alive as the caller may ask it: unloading models is the admin's
        (as `/api/v1/unload_model`), so a shorter stay than `[resources] keep_alive_s` from
        another key counts as keep_alive_s; a longer one (or -1) is anyone's to ask."""
        lifecycle, principal = self.lifecycle, current_principal()
        if seconds is None or seconds < 0 or lifecycle is None:
            return seconds
        if principal is not None and principal.is_admin:
            return seconds
        default = lifecycle.keep_alive_s
        return default if default < 0 else max(seconds, default)

    def _slot(self, prepared: Prepared, work: ThreadWork) -> Waiting:
        """A place in the model's lane (admins ahead of users); left however the block ends,
        once the threads of its binding call (`work`) have ended."""
        target = prepared.target
        capacity = self.registry.max_concurrency(target)
        lane = self.scheduler.lane(target.binding.instance_name, target.model, capacity)
        principal = current_principal()
        priority = ADMIN_PRIORITY if principal is not None and principal.is_admin else USER_PRIORITY
        owner = (principal.key_id or principal.client) if principal is not None else ""
        return self.scheduler.waiting(lane, priority, owner, work)

    def _turns(self, lane: Lane, ticket: Ticket) -> AsyncIterator[int]:
        """The ticket's queue position each time it changes, until it may run; none when it
        may run at once (the usual case, then without starting a generator)."""
        if not ticket.granted.is_set():
            return self._waiting_turns(lane, ticket)
        with span("queue.wait", {"lollms.lane": lane.name, "lollms.queue_position": 0}):
            pass
        self._waited(ticket, lane)
        return NO_TURNS

    async def _waiting_turns(self, lane: Lane, ticket: Ticket) -> AsyncIterator[int]:
        """`_turns` of a ticket that waits."""
        deadline = time.monotonic() + self.scheduler.queue_timeout_s
        last = lane.position(ticket)
        trace = current_trace()
        try:
            with span("queue.wait", {"lollms.lane": lane.name, "lollms.queue_position": last}):
                if last:
                    yield last
                while (
                    position := await self.scheduler.wait_turn(lane, ticket, deadline)
                ) is not None:
                    if position != last:
                        last = position
                        yield position
        finally:  # waiting for the backend's slot, granted or not, is no time of the server's
            if trace is not None:
                trace.waited_for_slot((ticket.granted_at or time.monotonic()) - ticket.entered_at)
        self._waited(ticket, lane)

    def _waited(self, ticket: Ticket, lane: Lane) -> None:
        """The queue wait of a ticket that may run, in the metrics."""
        if self.metrics is not None and ticket.granted_at:
            waited = max(0.0, ticket.granted_at - ticket.entered_at)
            instance = lane.name.partition("/")[0]
            self.metrics.child(self.metrics.queue_wait, instance).observe(waited)

    def accounted(self, prepared: Prepared) -> Accounted:
        """Concurrency slot and token budget of the caller's key; audit record at the end."""
        return Accounted(prepared, self.limiter, self.metrics, self.audit, self.drain)

    @contextlib.asynccontextmanager
    async def holding_slot(self) -> AsyncIterator[None]:
        """One of the caller's concurrency slots held across several generations (a tool
        loop's steps, prepared `in_slot`, run inside it)."""
        if self.limiter is None:
            yield
            return
        who = self.limiter.take_slot(caller())
        try:
            yield
        finally:
            self.limiter.give_slot(who)
