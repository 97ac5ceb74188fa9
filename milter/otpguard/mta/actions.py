"""Policy: what to do with a message, as data. The adapter is the only place that acts.

`plan()` maps a Decision and the [actions] config to a tuple of frozen Action values, in the
order the adapter applies them. Nothing here touches the MTA.
"""
from __future__ import annotations

import base64
import email.message
import email.parser
import email.policy
import html as html_lib
import quopri
import re
from dataclasses import dataclass
from typing import Any, Union

from ..auth.authresults import below_boundary, is_own_authserv_id
from ..config import ActionsConfig
from ..core.model import Decision
from .headers import (BURST, SYMBOLS, VERDICT, burst_value, escape_text, fold, format_score, is_own_header,
                      rewrite_subject, safe_value, symbols_value, verdict_value)

AUTH_RESULTS = "Authentication-Results"


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveForgedHeaders:
    """Delete incoming X-OTPGuard-* and Authentication-Results claiming our authserv-id, and
    those in a trusted host's name below the trust boundary (with trusted_ids)."""

    authserv_id: str | None = None
    trusted_ids: tuple[str, ...] = ()
    trusted_hops: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AddHeader:
    """Add a header; index -1 appends, 0 inserts at the top (trace-header position)."""

    name: str
    value: str
    index: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeSubject:
    """Replace the first Subject (or add one when the message has none)."""

    value: str
    add: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Quarantine:
    """Put the message on Postfix's hold queue with a reason."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject:
    """Refuse the message at end of DATA."""

    code: str = "550"
    xcode: str = "5.7.1"
    text: str = "Message rejected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Banner:
    """Prepend a warning to the first inline text/plain and text/html parts (see banner_body)."""

    text: str
    html: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Monitor:
    """Monitor mode: nothing is applied; `would` names what the config asks for."""

    would: tuple[str, ...] = ()


Action = Union[RemoveForgedHeaders, AddHeader, ChangeSubject, Quarantine, Reject, Banner, Monitor]


def level_key(decision: Decision) -> str:
    """The [actions] table key for a decision: genuine wins over the score level."""
    return "genuine" if decision.genuine else str(decision.level.value)


def tag_headers(decision: Decision, auth_results: str | None = None) -> tuple[AddHeader, ...]:
    """Our verdict headers (and Authentication-Results when we checked auth ourselves)."""
    verdict = verdict_value(decision.level.value, decision.score, genuine=decision.genuine,
                            analysed=decision.analysed)
    symbols = symbols_value(tuple((h.symbol, h.score, h.reason) for h in decision.hits))
    out = [AddHeader(name=VERDICT, value=verdict),
           AddHeader(name=SYMBOLS, value=fold(symbols, len(SYMBOLS)))]
    if auth_results:
        # RFC 8601 5: A-R goes above the fields it describes, like a trace header.
        out.insert(0, AddHeader(name=AUTH_RESULTS, value=safe_value(auth_results), index=0))
    return tuple(out)


def _reject(cfg: ActionsConfig) -> Reject:
    xcode, _, text = cfg.reject_text.partition(" ")
    # libmilter drops a reply whose text holds a lone '%' (smfi_setreply); double them.
    text = escape_text(text.strip() or "Message rejected", 200).replace("%", "%%")
    return Reject(code="550", xcode=xcode, text=text)


def _quarantine_reason(decision: Decision, cfg: ActionsConfig) -> str:
    try:
        reason = cfg.quarantine_reason.format(level=level_key(decision), score=format_score(decision.score))
    except (KeyError, IndexError, ValueError):
        reason = f"otpguard: {level_key(decision)} score={format_score(decision.score)}"
    return escape_text(reason, 200)


def plan(decision: Decision, cfg: ActionsConfig, subject: str | None, *,
         auth_results: str | None = None, authserv_id: str | None = None,
         burst: Any = None, hygiene: RemoveForgedHeaders | None = None) -> tuple[Action, ...]:
    """The actions for one message, in the order the adapter must apply them.

    `subject` is the raw value of the first Subject header (None when absent);
    `auth_results` is our own Authentication-Results value, if the engine made one;
    `burst` is a bursts.BurstNotice when this genuine code mail is part of a burst.
    A quarantined message always carries the verdict headers, so the hold queue listing can
    say why it is there; a rejected message needs nothing else.
    Header hygiene (`hygiene`, or our authserv_id alone) is not an action: with
    cfg.header_hygiene it runs in monitor mode too, so that no forged verdict or result
    reaches a mailbox during the week in monitor mode.
    """
    key = level_key(decision)
    wanted = cfg.by_level.get(key, ())
    clean_up = hygiene if hygiene is not None else RemoveForgedHeaders(authserv_id=authserv_id)
    if cfg.monitor:
        return ((clean_up,) if cfg.header_hygiene else ()) + (Monitor(would=tuple(wanted)),)
    out: list[Action] = [clean_up] if cfg.header_hygiene else []
    if "reject" in wanted:
        return (_reject(cfg),)
    if "tag" in wanted or "quarantine" in wanted:
        out += tag_headers(decision, auth_results)
    new_subject = None
    if "subject" in wanted:
        new_subject = rewrite_subject(subject, cfg.subject_prefix.get(key, ""))
    if burst is not None:
        out.append(AddHeader(name=BURST, value=burst_value(burst.recipient_count, burst.notice)))
        if burst.subject_prefix:
            current = new_subject if new_subject is not None else subject
            new_subject = rewrite_subject(current, burst.subject_prefix) or new_subject
    if new_subject is not None:
        out.append(ChangeSubject(value=new_subject, add=subject is None))
    if "banner" in wanted and (cfg.banner_text or cfg.banner_html):
        out.append(Banner(text=cfg.banner_text, html=cfg.banner_html))
    if "quarantine" in wanted:
        out.append(Quarantine(reason=_quarantine_reason(decision, cfg)))
    return tuple(out)


def error_plan(authserv_id: str | None = None, *, hygiene: RemoveForgedHeaders | None = None,
               tag: bool = True) -> tuple[Action, ...]:
    """What on_error = "accept" applies: forged headers still go, and the verdict says error
    (tag=False: monitor mode, where only the hygiene runs)."""
    clean_up = hygiene if hygiene is not None else RemoveForgedHeaders(authserv_id=authserv_id)
    return (clean_up, AddHeader(name=VERDICT, value="error")) if tag else (clean_up,)


def describe(actions: tuple[Action, ...]) -> str:
    """A short action summary for the log line: tag+subject+quarantine, monitor, reject, none."""
    names: list[str] = []
    for a in actions:
        match a:
            case Monitor():
                return "monitor"
            case Reject():
                return "reject"
            case AddHeader(name=n) if n == VERDICT:
                names.append("tag")
            case AddHeader(name=n) if n == BURST:
                names.append("burst_notice")
            case ChangeSubject():
                names.append("subject")
            case Banner():
                names.append("banner")
            case Quarantine():
                names.append("quarantine")
    return "+".join(dict.fromkeys(names)) or "none"


# --- Banner --------------------------------------------------------------------------------

_ENCODINGS = ("7bit", "8bit", "quoted-printable", "base64", "")
_BODY_TAG = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)


MAX_MIME_DEPTH = 5


def _split_entity(entity: bytes) -> tuple[bytes, bytes, bytes]:
    head, sep, body = entity.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = entity.partition(b"\n\n")
    return head, sep, body


def _leaf_banner(msg: email.message.Message, body: bytes, text: str, html: str) -> tuple[bytes | None, str]:
    """Banner for one text/plain or text/html entity body, re-encoded as it was."""
    ctype = msg.get_content_type()
    banner = text if ctype == "text/plain" else (html or ("<p>" + html_lib.escape(text, quote=False) + "</p>"))
    if not banner:
        return None, "no banner for " + ctype
    cte = str(msg.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte not in _ENCODINGS:
        return None, f"transfer encoding {cte}"
    charset = msg.get_content_charset() or "us-ascii"
    try:
        # HTML can carry any character as a numeric reference, whatever its charset.
        banner_bytes = banner.encode(charset, "xmlcharrefreplace" if ctype == "text/html" else "strict")
    except (LookupError, UnicodeEncodeError):
        return None, f"banner not representable in {charset}"
    if cte in ("7bit", "") and any(b > 0x7F for b in banner_bytes):
        return None, "8-bit banner in a 7bit part"
    try:
        if cte == "base64":
            decoded = base64.b64decode(body)
        elif cte == "quoted-printable":
            decoded = quopri.decodestring(body)
        else:
            decoded = body
    except (ValueError, TypeError):
        return None, f"undecodable {cte} body"
    eol = b"\r\n"
    banner_bytes = banner_bytes.replace(b"\r\n", b"\n").replace(b"\n", eol)
    if ctype == "text/plain":
        new = banner_bytes + eol + eol + decoded
    else:
        # Inside <body> when there is one, so the page stays well-formed.
        m = _BODY_TAG.search(decoded)
        at = m.end() if m else 0
        new = decoded[:at] + banner_bytes + eol + decoded[at:]
    if cte == "base64":
        return base64.encodebytes(new).replace(b"\n", eol), ""
    if cte == "quoted-printable":
        return quopri.encodestring(new.replace(eol, b"\n")).replace(b"\n", eol), ""
    return new, ""


def _entity_banner(head: bytes, body: bytes, text: str, html: str, done: set[str],
                   depth: int) -> tuple[bytes | None, str]:
    """New body of one MIME entity, or (None, why) when it is left alone."""
    msg = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(head + b"\r\n\r\n")
    ctype = msg.get_content_type()
    if msg.get_content_maintype() == "multipart":
        boundary = msg.get_boundary()
        if not boundary or depth >= MAX_MIME_DEPTH:
            return None, "multipart without boundary" if not boundary else "MIME nesting too deep"
        return _multipart_banner(body, boundary.encode("ascii", "replace"), text, html, done, depth + 1)
    if ctype not in ("text/plain", "text/html"):
        return None, f"content type {ctype}"
    if str(msg.get("Content-Disposition", "")).strip().lower().startswith("attachment"):
        return None, "attachment"
    if ctype in done:
        return None, f"{ctype} already has a banner"
    new, why = _leaf_banner(msg, body, text, html)
    if new is not None:
        done.add(ctype)
    return new, why


def _multipart_banner(body: bytes, boundary: bytes, text: str, html: str, done: set[str],
                      depth: int) -> tuple[bytes | None, str]:
    """Splice bannered parts into a multipart body; every other byte stays as it was.

    Delimiter lines are found as RFC 2046 5.1.1 defines them (CRLF, "--", boundary, optional
    "--" and trailing whitespace); preamble, epilogue, boundaries and untouched parts are
    copied byte for byte, so the MIME structure is never re-serialised.
    """
    delim = re.compile(rb"(?:^|\r\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|$)")
    matches = list(delim.finditer(body))
    if not matches:
        return None, "multipart without its boundary"
    out = [body[:matches[0].end()]]
    changed, why = False, "no text part"
    for i, m in enumerate(matches):
        if m.group(1):  # close delimiter: the rest is the epilogue
            out.append(body[m.end():])
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(body)
        segment = body[m.end():end]
        new_segment = None
        if segment.startswith(b"\r\n"):
            head, sep, part_body = _split_entity(segment[2:])
            if sep:
                new_body, reason = _entity_banner(head, part_body, text, html, done, depth)
                if new_body is not None:
                    new_segment = b"\r\n" + head + sep + new_body
                    changed = True
                elif not changed:
                    why = reason
        out.append(new_segment if new_segment is not None else segment)
        if i + 1 < len(matches):
            out.append(matches[i + 1].group(0))
    return (b"".join(out), "") if changed else (None, why)


def banner_body(raw: bytes, text: str, html: str) -> tuple[bytes | None, str]:
    """The new body (CRLF line ends) with the banner prepended, or (None, why skipped).

    The banner goes into the first inline text/plain and the first inline text/html part,
    each re-encoded with its own charset and transfer encoding. Multipart bodies are changed
    by splicing those parts only (see _multipart_banner); attachments, other types and parts
    whose charset cannot carry the banner are left alone, and the message keeps its body
    when nothing could be changed safely.
    """
    head, _, body = _split_entity(raw)
    return _entity_banner(head, body, text, html, set(), 0)


def forged_fields(headers: list[tuple[str, bytes]], authserv_id: str | None, *,
                  trusted_ids: tuple[str, ...] = (), trusted_hops: int = 0) -> list[tuple[str, int]]:
    """(name, 1-based index among fields of that name) of incoming fields to delete, last first:
    our own X-OTPGuard-* fields, Authentication-Results that claim our authserv-id, and those
    in a trusted host's name below the trust boundary (authresults.below_boundary).

    smfi_chgheader counts occurrences of one name; deleting from the highest index down
    keeps the remaining indexes valid whether or not the MTA renumbers after a delete.
    """
    below: set[int] = set()
    if trusted_ids:
        text = [(n, v.decode("utf-8", "replace")) if n.lower() in ("received", "authentication-results") else (n, "")
                for n, v in headers]
        below = set(below_boundary(text, trusted_ids, trusted_hops))
    seen: dict[str, int] = {}
    out: list[tuple[str, int]] = []
    for i, (name, value) in enumerate(headers):
        key = name.lower()
        seen[key] = seen.get(key, 0) + 1
        if is_own_header(name) or i in below:
            out.append((name, seen[key]))
        elif key == "authentication-results" and authserv_id and \
                is_own_authserv_id(value.decode("utf-8", "replace"), authserv_id):
            out.append((name, seen[key]))
    return sorted(out, key=lambda t: (t[0].lower(), -t[1]))
