"""`otpguard quarantine list|show ID|release ID|delete ID`: the Postfix hold queue, with our verdicts.

The quarantine is Postfix's hold queue (the milter's smfi_quarantine). Postfix keeps no hold
reason we can read back, so the verdict and reasons shown come from the X-OTPGuard-* headers
that otpguard adds to every message it quarantines. Everything goes through Postfix's own
tools: postqueue -j, postcat -hq, postsuper -H / postqueue -i, postsuper -d.
"""
from __future__ import annotations

import argparse
import email.message
import email.parser
import email.policy
import json
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from .headers import BURST, SYMBOLS, VERDICT, decode_subject

_QUEUE_ID = re.compile(r"^[0-9A-Za-z]{5,32}$")
TIMEOUT = 60


class QuarantineError(Exception):
    """A Postfix tool failed or the message is not in the hold queue."""


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
    verdict: str | None
    symbols: str | None
    burst: str | None = None


def _cmd(tool: str, postfix_config: str | None, *args: str) -> list[str]:
    return [tool, *(["-c", postfix_config] if postfix_config else []), *args]


def _run(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        res = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise QuarantineError(f"{argv[0]}: {exc}") from None
    if res.returncode != 0:
        err = res.stderr.decode("utf-8", "replace").strip() or f"exit status {res.returncode}"
        raise QuarantineError(f"{' '.join(argv)}: {err}")
    return res


def printable(text: str) -> str:
    """Text safe for a terminal: control characters (ESC, CR, ...) shown as \\xNN."""
    return "".join(c if (c.isprintable() or c == " ") else f"\\x{ord(c) & 0xFF:02x}" for c in text)


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


def _header(msg: email.message.Message, name: str) -> str | None:
    value = msg.get(name)
    if value is None:
        return None
    # compat32 hands back str (surrogate-escaped bytes) or Header objects for 8-bit values.
    return _unfold(value if isinstance(value, str) else str(value))


def describe(entry: dict[str, Any], postfix_config: str | None = None) -> HeldMessage:
    """A hold-queue entry with our headers read from the queue file."""
    qid = str(entry["queue_id"])
    try:
        hdrs = headers_of(qid, postfix_config)
    except QuarantineError:
        hdrs = email.message.Message()  # removed meanwhile: show the envelope only
    subject = _header(hdrs, "Subject")
    return HeldMessage(
        queue_id=qid,
        arrival_time=int(entry.get("arrival_time", 0)),
        size=int(entry.get("message_size", 0)),
        sender=str(entry.get("sender", "")),
        recipients=tuple(str(r.get("address", "")) for r in entry.get("recipients", [])),
        subject=decode_subject(subject) if subject is not None else None,
        from_=_header(hdrs, "From"),
        verdict=_header(hdrs, VERDICT),
        symbols=decode_subject(symbols) if (symbols := _header(hdrs, SYMBOLS)) is not None else None,
        burst=_header(hdrs, BURST),
    )


def held_messages(postfix_config: str | None = None) -> list[HeldMessage]:
    """Every held message, oldest first."""
    entries = [e for e in queue_entries(postfix_config) if e.get("queue_name") == "hold"]
    entries.sort(key=lambda e: (e.get("arrival_time", 0), e.get("queue_id", "")))
    return [describe(e, postfix_config) for e in entries]


def find_held(queue_id: str, postfix_config: str | None = None) -> dict[str, Any]:
    """The hold-queue entry for queue_id; QuarantineError if it is not held."""
    check_queue_id(queue_id)
    for e in queue_entries(postfix_config):
        if e.get("queue_id") == queue_id:
            if e.get("queue_name") != "hold":
                raise QuarantineError(f"{queue_id} is not held (it is in the {e.get('queue_name')} queue)")
            return e
    raise QuarantineError(f"{queue_id} is not in the queue")


def release(queue_id: str, postfix_config: str | None = None) -> None:
    """Release a held message and ask Postfix to deliver it now."""
    find_held(queue_id, postfix_config)
    _run(_cmd("postsuper", postfix_config, "-H", queue_id))
    # Released mail waits for the next queue scan unless we ask for it (postqueue -i).
    try:
        _run(_cmd("postqueue", postfix_config, "-i", queue_id))
    except QuarantineError:
        pass  # delivery still happens at the next queue run


def delete(queue_id: str, postfix_config: str | None = None) -> None:
    """Delete a held message (only from the hold queue)."""
    find_held(queue_id, postfix_config)
    _run(_cmd("postsuper", postfix_config, "-d", queue_id, "hold"))


# --- command line ---------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `otpguard quarantine`."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--postfix-config", metavar="DIR", default=argparse.SUPPRESS,
                        help="Postfix configuration directory (postfix -c DIR); default: Postfix's own")
    parser.add_argument("--postfix-config", metavar="DIR", default=None,
                        help="Postfix configuration directory (postfix -c DIR); default: Postfix's own")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("list", parents=[common], help="list held messages with verdict and reasons")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    for name, text in (("show", "show one held message's envelope, verdict and reasons"),
                       ("release", "release a held message for delivery"),
                       ("delete", "delete a held message")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("queue_id", metavar="ID")


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _print_message(m: HeldMessage, detail: bool) -> None:
    rcpts = ", ".join(m.recipients)
    print(f"{m.queue_id}  {_when(m.arrival_time)}  {printable(m.verdict or 'no otpguard verdict')}")
    print(f"  from {printable(m.sender or '<>')} to {printable(rcpts)}  ({m.size} bytes)")
    if m.subject is not None:
        print(f"  Subject: {printable(m.subject)}")
    if detail and m.from_ is not None:
        print(f"  From: {printable(m.from_)}")
    if m.symbols:
        if detail:
            print("  Reasons:")
            for entry in m.symbols.split("; "):
                print(f"    {printable(entry)}")
        else:
            print(f"  Reasons: {printable(m.symbols)}")
    if m.burst:
        print(f"  Burst: {printable(m.burst)}")


def run(args: argparse.Namespace) -> int:
    """Entry point of `otpguard quarantine`."""
    cfg = getattr(args, "postfix_config", None)
    try:
        if args.action == "list":
            held = held_messages(cfg)
            if args.json:
                for m in held:
                    print(json.dumps(asdict(m), ensure_ascii=True))
            else:
                for m in held:
                    _print_message(m, detail=False)
                print(f"{len(held)} held message(s)")
            return 0
        qid = check_queue_id(args.queue_id)
        if args.action == "show":
            _print_message(describe(find_held(qid, cfg), cfg), detail=True)
        elif args.action == "release":
            release(qid, cfg)
            print(f"{qid}: released for delivery")
        elif args.action == "delete":
            delete(qid, cfg)
            print(f"{qid}: deleted")
        return 0
    except QuarantineError as exc:
        print(f"otpguard quarantine: {exc}", file=sys.stderr)
        return 1
