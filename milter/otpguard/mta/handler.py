"""End of message, without libmilter: analyse within the time budget, plan the actions, account.

The adapter calls plan_message, carries the planned actions out through libmilter, then calls
record; on any exception it asks error_outcome what to answer. Stages are named so the log
line and the error metric say where a message failed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.model import Decision, Envelope
from ..ops import logs
from . import actions as act
from .deadline import AnalysisTimeout, run_with_deadline
from .runtime import Runtime
from .spool import CollectedMessage


@dataclass(slots=True)
class Progress:
    """How far one message got: the stage it is in and the decision, once there is one."""

    stage: str = "parse"
    decision: Decision | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """What end of message will do, and what it is based on."""

    decision: Decision
    actions: tuple[act.Action, ...]
    raw: bytes  # the analysed message, for a banner; b"" when only a prefix was analysed
    burst: object | None  # otpguard.ops.bursts.BurstNotice
    analysis_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorOutcome:
    """The answer to a message that failed: tempfail, or accept with the error tag (or not)."""

    tempfail: bool
    actions: tuple[act.Action, ...]  # to apply when accepting; empty in monitor mode
    label: str  # the action word of the log line
    detail: str


def plan_message(rt: Runtime, msg: CollectedMessage, envelope: Envelope, progress: Progress) -> Planned:
    """Analyse (or not, when too large) and plan; exceptions carry on to the caller's guard."""
    progress.stage = "analysis"
    budget = rt.config.analysis.time_budget_seconds
    analysis_started = time.monotonic()
    raw: bytes | None
    if msg.size > msg.max_message_bytes:
        # The header and the spooled front of the body are still analysed (engine.too_large).
        prefix = msg.raw()
        decision = run_with_deadline(lambda: rt.engine.too_large(msg.size, prefix, envelope), budget)
        raw = b""
    else:
        if rt.metrics is not None:
            rt.metrics.analysis_started()
        try:
            # milter.workers > 1: in a worker process (mta/pool.py), but for a small message,
            # whose analysis costs about what the hand-off to a worker does (milter.inline_max_bytes).
            if rt.pool is not None and msg.size > rt.config.milter.inline_max_bytes:
                decision, raw, truncated = rt.pool.analyse(msg, envelope, budget)
            else:
                raw = msg.raw()
                truncated = msg.size > len(raw)
                decision = run_with_deadline(lambda: rt.engine.analyse(raw, envelope, truncated=truncated), budget)
        finally:
            if rt.metrics is not None:
                rt.metrics.analysis_ended()
        if truncated:
            raw = b""  # a prefix must never become the new body (banner)
    progress.decision = decision
    # The histogram is analysis time, not the SMTP transfer since MAIL FROM.
    analysis_seconds = time.monotonic() - analysis_started
    progress.stage = "policy"
    burst = rt.bursts.observe(decision, envelope) if rt.bursts is not None else None
    planned = act.plan(decision, rt.config.actions_for(envelope.rcpt_to), msg.subject(),
                       auth_results=rt.engine.own_results_header(decision),
                       authserv_id=rt.config.auth.authserv_id, burst=burst, hygiene=hygiene(rt))
    if raw is None:  # a spooled message a worker read from its file: read here only for a banner
        raw = msg.raw() if any(isinstance(a, act.Banner) for a in planned) else b""
    return Planned(decision=decision, actions=planned, raw=raw, burst=burst, analysis_seconds=analysis_seconds)


def hygiene(rt: Runtime) -> act.RemoveForgedHeaders:
    """What header hygiene removes under this configuration (our id, forged trusted ones)."""
    a = rt.config.auth
    return act.RemoveForgedHeaders(authserv_id=a.authserv_id, trusted_ids=a.trusted_authserv_ids,
                                   trusted_hops=a.trusted_hops)


def message_facts(msg: CollectedMessage | None) -> dict[str, object]:
    """What the log line says about a message besides the verdict: envelope sender domain,
    recipient count, Message-ID and size (all attacker-controlled but the count: the log
    formatter escapes them, and the Message-ID is cut to a sane length)."""
    if msg is None:
        return {}
    sender = (msg.mail_from or "").rpartition("@")[2].strip("<>").lower()
    message_id = next((v for n, v in msg.headers if n.lower() == "message-id"), b"")
    return {"sender_domain": sender or "-", "rcpts": len(msg.rcpt_to),
            "message_id": message_id.decode("utf-8", "replace").strip()[:MAX_MESSAGE_ID] or "-",
            "size": msg.size}


MAX_MESSAGE_ID = 200  # RFC 5322 msg-ids are short; a longer one is junk that would bloat every line


def record(rt: Runtime, planned: Planned, *, queue_id: str | None, client_ip: str | None, started: float,
           notes: list[str], msg: CollectedMessage | None = None) -> None:
    """The message's log line and metrics, once its actions are applied."""
    elapsed = time.monotonic() - started
    logs.message(queue_id=queue_id, decision=planned.decision, action=act.describe(planned.actions),
                 ms=elapsed * 1000, client_ip=client_ip, notes=notes, facts=message_facts(msg))
    if rt.metrics is not None:
        rt.metrics.record_message(planned.decision, disposition(planned.actions), planned.analysis_seconds,
                                  applied=applied(planned.actions))
        if planned.burst is not None:
            rt.metrics.burst_detected(new=planned.burst.new_burst)  # type: ignore[attr-defined]
        if planned.decision.internal_failures:
            rt.metrics.record_error("analysis")  # caught inside the core: counted, never silent


def error_outcome(rt: Runtime, progress: Progress, exc: Exception, *, have_message: bool,
                  rcpts: tuple[str, ...] = ()) -> ErrorOutcome:
    """What to answer for a failed message (milter.on_error); counts the error, and the
    message in otpguard_messages_total with verdict "error"."""
    # Errors from the worker pool name their own stage ("worker": the worker ended).
    stage = "timeout" if isinstance(exc, AnalysisTimeout) else getattr(exc, "stage", progress.stage)
    cfg = rt.config.actions_for(rcpts)
    monitor = cfg.monitor
    # Monitor mode promises to change nothing, so it never defers mail either.
    tempfail = rt.config.milter.on_error == "tempfail" and not monitor
    label = "error-tempfail" if tempfail else ("monitor" if monitor else "error-accept")
    # After a failure half-way through the actions, what was applied stays; tagging again
    # would only add a second, contradicting verdict. Header hygiene runs in every mode.
    usable = not tempfail and have_message and stage != "actions"
    tag = usable and not monitor
    actions: tuple[act.Action, ...] = ()
    if usable:
        planned = act.error_plan(rt.config.auth.authserv_id, hygiene=hygiene(rt), tag=tag)
        actions = tuple(a for a in planned if cfg.header_hygiene or not isinstance(a, act.RemoveForgedHeaders))
    if rt.metrics is not None:
        try:
            rt.metrics.record_error(stage)
            rt.metrics.record_failed_message(
                "tempfail" if tempfail else "monitor" if monitor else "tag" if tag else "accept")
        except Exception:  # noqa: BLE001 - metrics must not turn one failure into two
            pass
    # An exception raised in a worker is named by its own text ("ValueError: ..."), as in one process.
    detail = f"{stage}: {exc}" if getattr(exc, "kind", None) else f"{stage}: {type(exc).__name__}: {exc}"
    return ErrorOutcome(tempfail=tempfail, label=label, detail=detail, actions=actions)


def log_error(outcome: ErrorOutcome, progress: Progress, *, queue_id: str | None, client_ip: str | None,
              started: float, detail: str, msg: CollectedMessage | None = None) -> None:
    """The one log line of a failed message."""
    logs.message(queue_id=queue_id, decision=progress.decision, action=outcome.label,
                 ms=(time.monotonic() - started) * 1000, error=detail, client_ip=client_ip,
                 facts=message_facts(msg))


def disposition(planned: tuple[act.Action, ...]) -> str:
    """The final action label for metrics: reject, quarantine, tag, monitor or accept."""
    kinds = {type(a) for a in planned}
    if act.Monitor in kinds:
        return "monitor"
    if act.Reject in kinds:
        return "reject"
    if act.Quarantine in kinds:
        return "quarantine"
    if kinds & {act.AddHeader, act.ChangeSubject, act.Banner}:
        return "tag"
    return "accept"


def applied(planned: tuple[act.Action, ...]) -> list[str]:
    """The action words applied, for metrics."""
    return [w for w in act.describe(planned).split("+") if w not in ("none", "monitor", "reject")] + \
        (["reject"] if any(isinstance(a, act.Reject) for a in planned) else [])


