"""What a finished generation leaves behind: its token charge, its metrics, its audit row."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..bindings import Usage
from ..errors import CLIENT_CLOSED, BackendUnavailable, LollmsError
from ..metrics import Metrics
from ..security.audit import AuditLog
from ..security.principal import Principal, caller
from ..security.ratelimit import RateLimiter, Reservation, tokens_to_reserve

if TYPE_CHECKING:
    from ..drain import Drain
    from .prepared import Prepared

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What the audit log and the token budget learn about one generation."""

    status: int = 200
    usage: Usage | None = None
    first_token_s: float | None = None
    served: Prepared | None = None  # the attempt that ran last (a fallback target's)
    asked_whole: bool = False  # a whole answer was asked of a backend (it works unseen)

    def tokens_used(self, reservation: Reservation) -> int:
        """What the token budget is charged: the usage, else (a stream cut short after its
        first token, or a whole answer whose client left while a backend worked on it) the
        whole reservation, else nothing."""
        if self.usage is not None:
            return self.usage.total_tokens
        left_mid_work = self.asked_whole and self.status == CLIENT_CLOSED
        return reservation.tokens if self.first_token_s is not None or left_mid_work else 0


def named(prepared: Prepared, outcome: Outcome) -> tuple[str | None, str]:
    """The instance and model a generation's numbers name: the attempt that ran last; a
    route's request refused before any target was tried, the route alone (no instance)."""
    target = (outcome.served or prepared).target
    if outcome.served is None and target.route is not None:
        return None, target.route
    return target.binding.instance_name, target.model


def count_outcome(metrics: Metrics, prepared: Prepared, outcome: Outcome) -> None:
    """The generation's counters: by status, time to first token, tokens and tokens/s (a
    route's request refused before any try counts under the route's name)."""
    instance = named(prepared, outcome)[0] or prepared.target.route or ""
    prepared = outcome.served or prepared
    kind = prepared.request.generation_type
    metrics.child(metrics.generations, instance, kind, str(outcome.status)).inc()
    if outcome.first_token_s is not None:
        metrics.child(metrics.first_token, instance).observe(outcome.first_token_s)
    if outcome.usage is not None and outcome.usage.completion_tokens:
        tokens = outcome.usage.completion_tokens
        target = prepared.target
        model = metrics.models.label(instance, target.model, target.binding)
        metrics.child(metrics.tokens, instance, model).inc(tokens)
        per_second = tokens / max(prepared.elapsed_s, 1e-6)
        metrics.child(metrics.tokens_per_second, instance).observe(per_second)


async def audit_outcome(
    audit: AuditLog, prepared: Prepared, principal: Principal | None, outcome: Outcome
) -> None:
    """The generation's audit row (metadata; the prompt only with `audit_prompts`)."""
    instance, model = named(prepared, outcome)
    prepared = outcome.served or prepared
    usage = outcome.usage
    detail: dict[str, Any] = {"face": prepared.face}
    if prepared.scripted and prepared.personality is not None:
        detail["script"] = prepared.personality.name
    if audit.log_prompts:
        detail["prompt"] = prepared.request.prompt
    try:
        await audit.record(
            "generation",
            key_id=principal.key_id if principal else None,
            client=principal.client if principal else None,
            status=outcome.status,
            request_id=prepared.request.request_id,
            instance=instance,
            model=model,
            generation_type=prepared.request.generation_type,
            duration_ms=round(prepared.elapsed_s * 1000, 3),
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            detail=detail,
        )
    except BackendUnavailable as exc:  # the database cannot be used now (full, unreachable)
        log.error("could not audit generation %s: %s", prepared.request.request_id, exc)
    except Exception:  # the audit write must never fail the request it describes
        log.exception("could not audit generation %s", prepared.request.request_id)


class Accounted:
    """Concurrency slot and token budget of the caller's key held for an `async with` block
    whose value is the Outcome; token charge, metrics and audit row when it ends. The drain
    stops the block's task at its end: that cancel leaves the block as the drain's `Draining`.

    No known caller: refused (fail closed). A script's run takes a slot and needs some budget
    left but reserves none: the generations it makes reserve their own and run in its slot.
    A class, not a generator-based context manager (an async generator per generation).
    """

    def __init__(
        self,
        prepared: Prepared,
        limiter: RateLimiter | None,
        metrics: Metrics | None,
        audit: AuditLog | None,
        drain: Drain | None = None,
    ) -> None:
        self.prepared, self.limiter, self.metrics, self.audit = prepared, limiter, metrics, audit
        self.drain = drain if not prepared.in_script else None  # a script's step: its run's
        self.task: asyncio.Task[Any] | None = None  # registered with the drain while it runs
        self.outcome = Outcome()
        self.reservation = Reservation(None)
        self.principal: Principal | None = None
        self.slot: str | None = None  # whose concurrency slot is held

    async def __aenter__(self) -> Outcome:
        drain = self.drain
        if drain is not None and drain.stopping:  # a tool loop's next step, after the drain
            raise drain.stopped()
        self.principal = principal = caller()
        prepared, limiter = self.prepared, self.limiter
        if limiter is not None:
            target = prepared.target
            hidden = limiter.template_tokens(target)
            needed = 0 if prepared.scripted else tokens_to_reserve(prepared.request, target.binding)
            needed += hidden if needed else 0
            try:  # a refusal (token budget, concurrency) is a generation's row too
                self.reservation = await limiter.reserve_tokens(principal, needed)
                if not (prepared.in_script or prepared.in_slot):
                    self.slot = limiter.take_slot(principal)
            except BaseException as exc:
                await self._end(exc)
                raise
        if drain is not None and (task := asyncio.current_task()) is not None:
            self.task = task
            drain.running.add(task)
        return self.outcome

    async def __aexit__(self, _type: object, exc: BaseException | None, _tb: object) -> None:
        if self.slot is not None and self.limiter is not None:
            self.limiter.give_slot(self.slot)
        stopped = None
        if self.task is not None and self.drain is not None:
            self.drain.running.discard(self.task)
            if self.drain.stopping and isinstance(exc, asyncio.CancelledError):
                self.task.uncancel()  # the cancel is answered: with the error below
                stopped = self.drain.stopped()
        await self._end(stopped or exc)
        if stopped is not None:
            raise stopped from exc

    async def _end(self, exc: BaseException | None) -> None:
        """The status an exception means, then the token charge, the metrics, the audit row."""
        outcome, prepared = self.outcome, self.prepared
        if isinstance(exc, LollmsError):
            outcome.status = exc.status
        elif isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
            outcome.status = CLIENT_CLOSED
        if self.limiter is not None:
            await self.limiter.settle(self.reservation, outcome.tokens_used(self.reservation))
            if outcome.usage is not None:  # what the served model's template added
                served = outcome.served or prepared
                self.limiter.learn_prompt(
                    served.target.binding.instance_name,
                    served.target.model,
                    served.request,
                    outcome.usage.prompt_tokens,
                )
        if self.metrics is not None:
            count_outcome(self.metrics, prepared, outcome)
        if self.audit is not None:
            await audit_outcome(self.audit, prepared, self.principal, outcome)
