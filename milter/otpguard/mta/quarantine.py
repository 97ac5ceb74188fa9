"""`otpguard quarantine list|show|release|delete`: the Postfix hold queue, with our verdicts.

The quarantine is Postfix's hold queue (the milter's smfi_quarantine). Postfix keeps no hold
reason we can read back, so the verdict and reasons shown come from the X-OTPGuard-* headers
that otpguard adds to every message it quarantines. Everything goes through Postfix's own
tools: postqueue -j, postcat -hq / -bhq, postsuper -d, sendmail (release) or postsuper -H.

Release resubmits the message through Postfix's sendmail with the same envelope and its
X-OTPGuard-Verdict rewritten to `released; was=<verdict>` (quarantine.released_verdict), then
deletes the held copy, so the reader and any later filter see that a person let it through.
When otpguard is also in non_smtpd_milters, a resubmitted copy would be scanned and held again:
then the message is released in place (postsuper -H) with its header unchanged, and we say so.
Every release and delete writes one audit line (quarantine.audit_log).
"""
from __future__ import annotations

import argparse
import email.message
import email.parser
import email.policy
import email.utils
import fnmatch
import getpass
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..config import Config, ConfigError, QuarantineConfig, load_chosen
from ..core.brand import BrandProfile
from ..core.linkinfo import describe_link
from ..core.parse import parse_message
from ..core.settings import AnalysisConfig
from ..ops.logs import logfmt
from ..ops.terminal import columns, printable, shorten, wrap
from .headers import BURST, SYMBOLS, VERDICT, decode_subject

_QUEUE_ID = re.compile(r"^[0-9A-Za-z]{5,32}$")
TIMEOUT = 60
LEVELS = ("phish", "suspicious", "clean", "error", "released", "none")
_ENTRY = re.compile(r"([A-Z0-9_]+)\((-?[0-9.]+)\)(?: \[((?:\\.|[^\]\\])*)\])?(?:; |$)")
_DURATION = re.compile(r"^([0-9]+)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class QuarantineError(Exception):
    """A Postfix tool failed or the message is not in the hold queue."""


class PermissionDenied(QuarantineError):
    """The hold queue's files cannot be read as this user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Symbol:
    name: str
    score: float | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldMessage:
    """One message in the hold queue, with what otpguard said about it."""

    queue_id: str
    arrival_time: int
    size: int
    sender: str
    recipients: tuple[str, ...]
    subject: str | None
    from_: str | None
    verdict_header: str | None
    verdict: str | None  # the level word of X-OTPGuard-Verdict: phish, suspicious, ...
    score: float | None
    symbols: tuple[Symbol, ...] = ()
    burst: str | None = None
    error: str | None = None  # why the headers could not be read


# --- Postfix tools ------------------------------------------------------------------------------

def _cmd(tool: str, postfix_config: str | None, *args: str) -> list[str]:
    return [tool, *(["-c", postfix_config] if postfix_config else []), *args]


def _run(argv: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        res = subprocess.run(argv, input=stdin, capture_output=True, timeout=TIMEOUT, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QuarantineError(f"{argv[0]}: {exc}") from None
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip() or f"exit status {res.returncode}"
        cls = PermissionDenied if "permission denied" in err.lower() else QuarantineError
        raise cls(f"{' '.join(argv)}: {err}")
    return res


def check_queue_id(queue_id: str) -> str:
    """A Postfix queue id (short or long form); anything else is refused before any tool runs."""
    if not _QUEUE_ID.match(queue_id):
        raise QuarantineError(f"not a Postfix queue id: {printable(queue_id)!r}")
    return queue_id


def queue_entries(postfix_config: str | None = None) -> list[dict[str, Any]]:
    """All queued messages, as postqueue -j objects."""
    res = _run(_cmd("postqueue", postfix_config, "-j"))
    out = []
    for line in res.stdout.decode("utf-8", "replace").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


def held_count(postfix_config: str | None = None) -> int | None:
    """How many messages are held, or None if Postfix cannot be asked."""
    try:
        return sum(1 for e in queue_entries(postfix_config) if e.get("queue_name") == "hold")
    except (QuarantineError, ValueError):
        return None


def _unfold(value: str | None) -> str | None:
    if value is None:
        return None
    return re.sub(r"\r?\n(?=[ \t])", "", str(value)).strip()


def headers_of(queue_id: str, postfix_config: str | None = None) -> email.message.Message:
    """The header section of a queued message (postcat -hq)."""
    res = _run(_cmd("postcat", postfix_config, "-hq", check_queue_id(queue_id)))
    return email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(res.stdout)


def content_of(queue_id: str, postfix_config: str | None = None) -> bytes:
    """Header and body of a queued message as Postfix stores them (postcat -bhq)."""
    return _run(_cmd("postcat", postfix_config, "-bhq", check_queue_id(queue_id))).stdout


def _header(msg: email.message.Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    # compat32 hands back str (surrogate-escaped bytes) or Header objects for 8-bit values.
    return _unfold(value if isinstance(value, str) else str(value))


# --- our headers, read back ----------------------------------------------------------------

def parse_verdict(value: str | None) -> tuple[str | None, float | None]:
    """(level, score) of an X-OTPGuard-Verdict value such as "phish; score=12.5"."""
    if not value:
        return None, None
    parts = [p.strip() for p in value.split(";")]
    score = None
    for p in parts[1:]:
        key, _, val = p.partition("=")
        if key.strip() == "score":
            try:
                score = float(val)
            except ValueError:
                score = None
    return parts[0].lower() or None, score


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_symbols(value: str | None) -> tuple[Symbol, ...]:
    """The entries of X-OTPGuard-Symbols: `SYM(score) [reason]; ...` (brackets in reasons are
    escaped by the writer, mta/headers.py, so a reason cannot end an entry early)."""
    if not value or value == "none":
        return ()
    out = []
    for m in _ENTRY.finditer(value):
        try:
            score: float | None = float(m.group(2))
        except ValueError:
            score = None
        out.append(Symbol(name=m.group(1), score=score, reason=_unescape(m.group(3) or "").strip()))
    return tuple(out)


def describe(entry: dict[str, Any], postfix_config: str | None = None) -> HeldMessage | None:
    """A hold-queue entry with our headers read from the queue file (None: it left meanwhile).

    A permission problem is raised, never shown as a message without a verdict."""
    qid = str(entry["queue_id"])
    error = None
    try:
        hdrs = headers_of(qid, postfix_config)
    except PermissionDenied:
        raise
    except QuarantineError as exc:
        if "no such file" in str(exc).lower():
            return None  # released or deleted while we looked
        hdrs, error = email.message.Message(), str(exc)
    subject = _header(hdrs, "Subject")
    verdict_header = _header(hdrs, VERDICT)
    level, score = parse_verdict(verdict_header)
    symbols = _header(hdrs, SYMBOLS)
    return HeldMessage(
        queue_id=qid,
        arrival_time=int(entry.get("arrival_time", 0)),
        size=int(entry.get("message_size", 0)),
        sender=str(entry.get("sender", "")),
        recipients=tuple(str(r.get("address", "")) for r in entry.get("recipients", [])),
        subject=decode_subject(subject) if subject is not None else None,
        from_=_header(hdrs, "From"),
        verdict_header=verdict_header,
        verdict=level,
        score=score,
        symbols=parse_symbols(decode_subject(symbols) if symbols is not None else None),
        burst=_header(hdrs, BURST),
        error=error,
    )


# --- filters --------------------------------------------------------------------------------

def parse_duration(text: str) -> int:
    """Seconds of "90", "90s", "30m", "12h", "7d" or "2w"."""
    m = _DURATION.match(text.strip().lower())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30m, 12h, 7d, 2w)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _address_matches(pattern: str, address: str) -> bool:
    """Shell wildcards (*@example.com) match the whole address; plain text matches a part."""
    pattern, address = pattern.lower(), address.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(address, pattern)
    return pattern in address


@dataclass(frozen=True, slots=True, kw_only=True)
class Filter:
    verdicts: tuple[str, ...] = ()
    older_than: int | None = None  # seconds
    sender: str | None = None
    recipient: str | None = None

    @property
    def empty(self) -> bool:
        return not self.verdicts and self.older_than is None and self.sender is None and self.recipient is None

    def matches(self, m: HeldMessage, now: float) -> bool:
        if self.verdicts and (m.verdict or "none") not in self.verdicts:
            return False
        if self.older_than is not None and now - m.arrival_time < self.older_than:
            return False
        if self.sender is not None and not any(
                _address_matches(self.sender, a) for a in (m.sender, email.utils.parseaddr(m.from_ or "")[1])):
            return False
        if self.recipient is not None and not any(_address_matches(self.recipient, r) for r in m.recipients):
            return False
        return True


def held_messages(postfix_config: str | None = None, flt: Filter | None = None,
                  now: float | None = None) -> list[HeldMessage]:
    """Every held message (matching flt), oldest first."""
    entries = [e for e in queue_entries(postfix_config) if e.get("queue_name") == "hold"]
    entries.sort(key=lambda e: (e.get("arrival_time", 0), e.get("queue_id", "")))
    now = time.time() if now is None else now
    out = []
    for e in entries:
        m = describe(e, postfix_config)
        if m is not None and (flt is None or flt.matches(m, now)):
            out.append(m)
    return out


def find_held(queue_id: str, postfix_config: str | None = None,
              entries: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The hold-queue entry for queue_id (among entries, else the queue now); QuarantineError
    if it is not held."""
    check_queue_id(queue_id)
    for e in queue_entries(postfix_config) if entries is None else entries:
        if e.get("queue_id") == queue_id:
            if e.get("queue_name") != "hold":
                raise QuarantineError(f"{queue_id} is not held (it is in the {e.get('queue_name')} queue)")
            return e
    raise QuarantineError(f"{queue_id} is not in the queue")


# --- release and delete ------------------------------------------------------------------------

def released_content(content: bytes, released_verdict: str) -> bytes:
    """The message with its X-OTPGuard-Verdict (folded lines included) rewritten to
    `<released_verdict>; was=<old value>`; a message without one gets the field added on top."""
    head, sep, body = content.partition(b"\n\n")
    lines = head.split(b"\n")
    out: list[bytes] = []
    old: bytes | None = None
    at = 0
    skipping = False
    name = VERDICT.lower().encode() + b":"
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            old = (old or b"") + b" " + line.strip()
            continue
        skipping = False
        if line.lower().startswith(name) and old is None:
            old, at, skipping = line[len(name):].strip(), len(out), True
            out.append(b"")  # filled below, once the folded value is complete
            continue
        out.append(line)
    value = f"{released_verdict}; was=".encode() + (old.split(b";", 1)[0].strip() if old else b"unknown")
    if old and b";" in old:
        value += b";" + old.split(b";", 1)[1]
    field = VERDICT.encode() + b": " + value
    if old is None:
        out.insert(0, field)
    else:
        out[at] = field
    return b"\n".join(out) + sep + body


def otpguard_in_non_smtpd_milters(postfix_config: str | None) -> bool:
    """Is otpguard also in non_smtpd_milters? Then resubmitted mail would be scanned again."""
    try:
        res = _run(_cmd("postconf", postfix_config, "-hx", "non_smtpd_milters"))
    except QuarantineError:
        return True  # cannot tell: release in place, the safe way
    return "otpguard" in res.stdout.decode("utf-8", "replace")


def _sendmail_env(postfix_config: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if postfix_config:
        env["MAIL_CONFIG"] = postfix_config
    return env


def release(queue_id: str, postfix_config: str | None = None, *,
            released_verdict: str = QuarantineConfig().released_verdict) -> str:
    """Release a held message for delivery; returns how ("resubmitted as NEWID" or "in place")."""
    entry = find_held(queue_id, postfix_config)
    if otpguard_in_non_smtpd_milters(postfix_config):
        _run(_cmd("postsuper", postfix_config, "-H", queue_id))
        try:  # released mail waits for the next queue scan unless we ask for it (postqueue -i)
            _run(_cmd("postqueue", postfix_config, "-i", queue_id))
        except QuarantineError:
            pass
        return ("released in place, header unchanged: otpguard is also in non_smtpd_milters, "
                "so a resubmitted copy would be held again")
    content = released_content(content_of(queue_id, postfix_config), released_verdict)
    sender = str(entry.get("sender", "")) or "<>"
    rcpts = [str(r.get("address", "")) for r in entry.get("recipients", []) if r.get("address")]
    if not rcpts:
        raise QuarantineError(f"{queue_id} has no recipient left to deliver to")
    # -i: a line with a single dot is text; -f: the original envelope sender (bounces go where
    # they went before). The held copy is deleted only once sendmail has taken the new one.
    _run(["sendmail", "-i", "-f", sender, "--", *rcpts], stdin=content, env=_sendmail_env(postfix_config))
    _run(_cmd("postsuper", postfix_config, "-d", queue_id, "hold"))
    return "resubmitted with X-OTPGuard-Verdict: " + released_verdict


def delete(queue_id: str, postfix_config: str | None = None) -> None:
    """Delete a held message (only from the hold queue)."""
    find_held(queue_id, postfix_config)
    _run(_cmd("postsuper", postfix_config, "-d", queue_id, "hold"))


# --- audit ------------------------------------------------------------------------------------

def audit_line(action: str, m: HeldMessage, outcome: str) -> str:
    """One logfmt line for one released or deleted message (what, who, which message)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return logfmt([("event", f"quarantine_{action}"), ("queue_id", m.queue_id), ("user", user),
                   ("uid", os.getuid()), ("sender", m.sender or "<>"), ("recipients", list(m.recipients)),
                   ("verdict", m.verdict or "none"), ("score", m.score), ("subject", m.subject or ""),
                   ("outcome", outcome)])


def write_audit(target: str, line: str) -> None:
    """Append the line to the audit file, or send it to syslog (facility mail)."""
    if target == "syslog":
        import syslog

        syslog.openlog("otpguard-quarantine", syslog.LOG_PID, syslog.LOG_MAIL)
        syslog.syslog(syslog.LOG_NOTICE, line)
        return
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(f"{stamp} {line}\n")


# --- output -------------------------------------------------------------------------------------

def _iso(ts: int) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else None


def message_json(m: HeldMessage) -> dict[str, Any]:
    """The JSON object of one held message."""
    return {
        "queue_id": m.queue_id, "verdict": m.verdict, "score": m.score,
        "symbols": [{"name": s.name, "score": s.score, "reason": s.reason} for s in m.symbols],
        "from": m.from_, "sender": m.sender, "to": list(m.recipients), "subject": m.subject,
        "size": m.size, "arrival": _iso(m.arrival_time), "arrival_time": m.arrival_time,
        "verdict_header": m.verdict_header, "burst": m.burst, "error": m.error,
    }


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _verdict_text(m: HeldMessage) -> str:
    if m.error:
        return f"headers unreadable: {m.error}"
    if m.verdict is None:
        return "no otpguard verdict (held by something else)"
    return f"{m.verdict} {m.score:g}" if m.score is not None else m.verdict


def print_summary(m: HeldMessage, width: int) -> None:
    rcpts = ", ".join(m.recipients)
    print(f"{m.queue_id}  {_when(m.arrival_time)}  {printable(_verdict_text(m))}")
    print(f"  from {printable(m.sender or '<>')} to {printable(rcpts)}  ({m.size} bytes)")
    if m.subject is not None:
        print(f"  Subject: {shorten(m.subject, width - 11)}")
    if m.symbols:
        names = ", ".join(s.name for s in m.symbols)
        print("\n".join(wrap(f"Symbols: {names}", width, "  ")))
    if m.burst:
        print(f"  Burst: {shorten(m.burst, width - 9)}")


def print_detail(m: HeldMessage, content: bytes | None, brand: BrandProfile | None, lines: int, width: int) -> None:
    """Envelope, headers, reasons, links with registered domain and the body's first lines."""
    print_summary(m, width)
    if m.from_ is not None:
        print(f"  From: {printable(m.from_)}")
    if m.symbols:
        print("  Reasons:")
        for s in m.symbols:
            score = f"{s.score:+.2f}" if s.score is not None else "?"
            print(f"    {s.name:<26} {score:>7}")
            if s.reason:
                print("\n".join(wrap(s.reason, width, "      ")))
    if content is None:
        return
    msg = parse_message(content, AnalysisConfig())
    infos = [describe_link(li.href, li.text, li.source, brand) for li in msg.links]
    print(f"  Links ({len(infos)}):")
    for li in infos:
        where = li.registered_domain or li.host or "-"
        print(f"    {li.category:<12} {printable(where):<28} {shorten(li.href, max(20, width - 46))}")
    body = [ln for ln in msg.text.splitlines() if ln.strip()]
    print(f"  Body (first {min(lines, len(body))} of {len(body)} lines):")
    for ln in body[:lines]:
        print(f"    | {shorten(ln, width - 6)}")


# --- command line ---------------------------------------------------------------------------

def add_filter_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verdict", action="append", choices=LEVELS, metavar="LEVEL",
                   help="only messages with this otpguard verdict (phish, suspicious, released, none...); repeatable")
    p.add_argument("--older-than", metavar="AGE", type=parse_duration,
                   help="only messages held longer than AGE (90s, 30m, 12h, 7d, 2w)")
    p.add_argument("--sender", metavar="PATTERN",
                   help="envelope sender or From address contains PATTERN (or matches it, with * ? [])")
    p.add_argument("--recipient", metavar="PATTERN", help="a recipient contains or matches PATTERN")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `otpguard quarantine`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--postfix-config", metavar="DIR", default=argparse.SUPPRESS,
                        help="Postfix configuration directory (postfix -c DIR); default: Postfix's own")
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="otpguard configuration (audit log, released verdict, brand for link categories)")
    parser.add_argument("--postfix-config", metavar="DIR", default=None,
                        help="Postfix configuration directory (postfix -c DIR); default: Postfix's own")
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="otpguard configuration; default: $OTPGUARD_CONFIG, else "
                             "/etc/otpguard/otpguard.toml, else the packaged default")
    sub = parser.add_subparsers(dest="action", required=True)
    text = "list held messages with verdict and symbols, oldest first"
    p = sub.add_parser("list", parents=[common], help=text, description=text)
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    add_filter_arguments(p)
    text = "show held messages: envelope, verdict, reasons, links with registered domain, first body lines"
    p = sub.add_parser("show", parents=[common], help=text, description=text)
    p.add_argument("queue_ids", nargs="+", metavar="ID")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p.add_argument("--lines", type=int, default=20, metavar="N", help="body lines to show (default 20)")
    for name, text in (("release", "release held messages for delivery (by ID, or every message a filter selects)"),
                       ("delete", "delete held messages (by ID, or every message a filter selects)")):
        p = sub.add_parser(name, parents=[common], help=text, description=text)
        p.add_argument("queue_ids", nargs="*", metavar="ID")
        add_filter_arguments(p)
        p.add_argument("--all", action="store_true", help="with no ID and no filter: every held message")
        p.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")


def _filter_of(args: argparse.Namespace) -> Filter:
    return Filter(verdicts=tuple(getattr(args, "verdict", None) or ()), older_than=getattr(args, "older_than", None),
                  sender=getattr(args, "sender", None), recipient=getattr(args, "recipient", None))


def _config(args: argparse.Namespace, required: bool) -> Config | None:
    """The otpguard config: needed to release or delete (audit log); optional to look."""
    try:
        return load_chosen(getattr(args, "config", None),
                           lambda text: print(f"otpguard quarantine: {text}", file=sys.stderr))
    except ConfigError as exc:
        if required:
            raise
        print(f"otpguard quarantine: note: {exc}; link categories without a brand", file=sys.stderr)
        return None


def _selected(args: argparse.Namespace, pf: str | None) -> list[HeldMessage]:
    """The messages a release/delete applies to: the IDs given, else those the filter selects."""
    flt = _filter_of(args)
    if args.queue_ids:
        # Only the named messages are read (a large quarantine costs one postcat per ID, not all);
        # a missing or unheld ID raises with the reason before anything is done.
        queue = queue_entries(pf)
        entries = [find_held(qid, pf, queue) for qid in dict.fromkeys(args.queue_ids)]
        now = time.time()
        return [m for e in entries if (m := describe(e, pf)) is not None and flt.matches(m, now)]
    if flt.empty and not args.all:
        raise QuarantineError(f"{args.action}: give queue IDs, a filter (--verdict, --older-than, --sender, "
                              "--recipient) or --all")
    return held_messages(pf, flt)


def _act(args: argparse.Namespace, pf: str | None) -> int:
    cfg = _config(args, required=True)
    assert cfg is not None
    targets = _selected(args, pf)
    failed = 0
    for m in targets:
        if args.dry_run:
            print(f"{m.queue_id}: would {args.action} ({printable(_verdict_text(m))})")
            continue
        try:
            if args.action == "release":
                outcome = release(m.queue_id, pf, released_verdict=cfg.quarantine.released_verdict)
            else:
                delete(m.queue_id, pf)
                outcome = "deleted"
        except QuarantineError as exc:
            failed += 1
            outcome = f"failed: {exc}"
            print(f"otpguard quarantine: {m.queue_id}: {exc}", file=sys.stderr)
        else:
            print(f"{m.queue_id}: {outcome}")
        try:
            write_audit(cfg.quarantine.audit_log, audit_line(args.action, m, outcome))
        except OSError as exc:
            failed += 1
            print(f"otpguard quarantine: cannot write the audit log {cfg.quarantine.audit_log}: {exc}",
                  file=sys.stderr)
    verb = "would be " if args.dry_run else ""
    print(f"{len(targets)} message(s) {verb}{'released' if args.action == 'release' else 'deleted'}"
          + (f", {failed} failed" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def _show(args: argparse.Namespace, pf: str | None, width: int) -> int:
    cfg = _config(args, required=False)
    brand = cfg.brands[0] if cfg is not None and cfg.brands else None
    for i, qid in enumerate(args.queue_ids):
        m = describe(find_held(check_queue_id(qid), pf), pf)
        if m is None:
            raise QuarantineError(f"{qid} left the hold queue")
        content = content_of(qid, pf)
        if args.json:
            msg = parse_message(content, AnalysisConfig())
            out = message_json(m)
            out["links"] = [{"href": li.href, "host": li.host, "registered_domain": li.registered_domain,
                             "category": li.category}
                            for li in (describe_link(x.href, x.text, x.source, brand) for x in msg.links)]
            out["body_lines"] = [ln for ln in msg.text.splitlines() if ln.strip()][: args.lines]
            print(json.dumps(out, ensure_ascii=True))
            continue
        if i:
            print()
        print_detail(m, content, brand, args.lines, width)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Entry point of `otpguard quarantine`."""
    pf = getattr(args, "postfix_config", None)
    width = columns()
    try:
        if args.action == "list":
            held = held_messages(pf, _filter_of(args))
            if args.json:
                for m in held:
                    print(json.dumps(message_json(m), ensure_ascii=True))
            else:
                for m in held:
                    print_summary(m, width)
                print(f"{len(held)} held message(s)")
            return EXIT_FAILED if any(m.error for m in held) else EXIT_OK
        if args.action == "show":
            return _show(args, pf, width)
        return _act(args, pf)
    except PermissionDenied as exc:
        print(f"otpguard quarantine: permission denied: {exc}\n"
              "  (the hold queue is readable by root only: run as root, e.g. with sudo)", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:
        print(f"otpguard quarantine: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except QuarantineError as exc:
        print(f"otpguard quarantine: {exc}", file=sys.stderr)
        return EXIT_FAILED

