"""Authentication-Results (RFC 8601): read trusted upstream ones, write ours, spot forged ones. No I/O."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import authres  # type: ignore[import-untyped]
import authres.arc  # type: ignore[import-untyped]
import authres.dmarc  # type: ignore[import-untyped]

from ..core.domains import psl
from ..core.model import AuthSummary, DkimResult

log = logging.getLogger(__name__)

A_R = "authentication-results"
# A header longer than this is not something a real MTA wrote; authres's regex parser is not
# linear on hostile input, so it never sees more than this.
MAX_HEADER_CHARS = 8192

_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NON_ASCII = re.compile(r"[^\x20-\x7e]")
_AAR_INSTANCE = re.compile(r"^\s*i\s*=\s*(\d+)\s*;\s*", re.IGNORECASE)

# domains.psl() adds com.be to the bundled snapshot: without it every *.com.be signer would
# align (RFC 7489 3.1) with amazon.com.be.


@lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """The RFC 7489 section 3.2 organizational domain of a name, by the ICANN Public Suffix List."""
    d = domain.strip().rstrip(".").lower()
    if not d:
        return ""
    found = psl()(d)
    if found.top_domain_under_public_suffix:
        return found.top_domain_under_public_suffix
    if found.suffix:
        return d  # the name is itself a public suffix
    # RFC 7489 3.2 applies the PSL algorithm, whose default rule "*" makes any unlisted TLD
    # (.test, .example, .internal) a public suffix: keep one label below it.
    labels = d.split(".")
    return ".".join(labels[-2:])


def aligned(identifier: str, from_domain: str, *, strict: bool = False) -> bool:
    """RFC 7489 3.1 identifier alignment: strict = same name, relaxed = same organizational domain."""
    a = identifier.strip().rstrip(".").lower()
    b = from_domain.strip().rstrip(".").lower()
    if not a or not b:
        return False
    if strict:
        return a == b
    return a == b or organizational_domain(a) == organizational_domain(b)


def _unfold(value: str) -> str:
    return _FOLD.sub("", value).strip()


def _parse(value: str) -> authres.AuthenticationResultsHeader | None:
    """Parse a header value; when one resinfo is malformed, keep the others that parse."""
    text = _unfold(value)
    if len(text) > MAX_HEADER_CHARS:
        return None
    header = _parse_strict(text)
    if header is not None:
        return header
    # Real hosts write resinfos authres rejects (Fastmail's bimi policy.authority-uri= with the
    # URI folded after the "="): one bad method must not hide the dkim and dmarc beside it.
    parts = _split_top_level(text)
    if len(parts) < 2:
        log.debug("unparsable Authentication-Results ignored: %.120r", text)
        return None
    results = []
    for part in parts[1:]:
        one = _parse_strict(f"{parts[0]}; {part}")
        if one is not None:
            results.extend(one.results)
    first = _parse_strict(f"{parts[0]}; none")
    if first is None:
        return None
    first.results = results
    return first


def _parse_strict(text: str) -> authres.AuthenticationResultsHeader | None:
    try:
        header: authres.AuthenticationResultsHeader = authres.all_features().parse_value(text)
    except Exception as exc:  # authres raises more than its own errors on garbage (ValueError, ...)
        log.debug("Authentication-Results part not parsed: %s: %.120r", exc.__class__.__name__, text)
        return None
    return header


def _split_top_level(text: str) -> list[str]:
    """Split on ";" outside quoted strings and comments (RFC 8601 2.2 resinfo separators)."""
    parts: list[str] = []
    depth, quoted, escaped, start = 0, False, False, 0
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif quoted:
            quoted = c != '"'
        elif c == '"':
            quoted = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth = max(0, depth - 1)
        elif c == ";" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _prop(result: authres.AuthenticationResult, ptype: str, name: str) -> str | None:
    for p in result.properties:
        if p.type == ptype and p.name == name and p.value:
            return str(p.value)
    return None


def _domain_of(value: str | None) -> str | None:
    if not value:
        return None
    d = value.rsplit("@", 1)[-1].strip().strip("<>").rstrip(".").lower()
    return d or None


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """What trusted upstream Authentication-Results say, and which ones are forgeries."""

    summary: AuthSummary | None  # the believed results, None without any
    forged: tuple[str, ...] = ()  # authserv-ids of trusted-id fields found below the trust boundary


def trusted_id_of(value: str, trusted: frozenset[str] | set[str]) -> str | None:
    """The authserv-id of an Authentication-Results value when it is one of `trusted` (lower case)."""
    token = _leading_authserv_id(_unfold(value)[:MAX_HEADER_CHARS])
    if token is None:
        return None
    token = token.lower()
    return token if token in trusted else None


def below_boundary(headers: Sequence[tuple[str, str]], trusted_ids: Iterable[str],
                   trusted_hops: int | None) -> list[int]:
    """Indexes of Authentication-Results fields in a trusted id's name that lie below the trust
    boundary: more Received fields above them than `trusted_hops` (None: no boundary).

    Header fields are prepended hop by hop (RFC 5321 4.4, RFC 8601 5): a field written by the
    host that handed the mail to this MTA, or by a milter on this MTA, sits above every
    Received field that host's predecessors wrote. The milter does not see the Received field
    of its own Postfix (smtpd adds it after its milters saw the header), so with trusted_hops =
    0 a result is believed only above the topmost Received field the milter sees. Deeper down
    it was in the message before it reached a trusted host: anyone could have written it.
    """
    if trusted_hops is None:
        return []
    trusted = frozenset(t.strip().lower() for t in trusted_ids if t.strip())
    out: list[int] = []
    received = 0
    for i, (name, value) in enumerate(headers):
        key = name.strip().lower()
        if key == "received":
            received += 1
        elif key == A_R and received > trusted_hops and trusted_id_of(value, trusted) is not None:
            out.append(i)
    return out


def upstream_results(headers: Sequence[tuple[str, str]], trusted_ids: tuple[str, ...],
                     from_domain: str | None, *, trusted_hops: int | None = None) -> Upstream:
    """Believed results of trusted upstream hosts, and the trusted-id fields that are forged."""
    trusted = frozenset(t.strip().lower() for t in trusted_ids if t.strip())
    if not trusted:
        return Upstream(summary=None)
    forged_at = set(below_boundary(headers, trusted, trusted_hops))
    forged = tuple(dict.fromkeys(trusted_id_of(headers[i][1], trusted) or "" for i in sorted(forged_at)))
    believed = [(n, v) for i, (n, v) in enumerate(headers) if i not in forged_at]
    return Upstream(summary=summary_from_headers(believed, trusted_ids, from_domain), forged=forged)


def summary_from_headers(headers: Sequence[tuple[str, str]], trusted_ids: tuple[str, ...],
                         from_domain: str | None, *, trusted_hops: int | None = None) -> AuthSummary | None:
    """The results of the topmost trusted Authentication-Results authserv-id, or None without one.

    All headers carrying that authserv-id are merged (hosts such as Fastmail write one header per
    method); within a method the topmost result wins. A trusted id must belong to a host that
    removes inbound headers claiming its id (RFC 8601 section 5), else anyone can forge them;
    with trusted_hops, fields below the trust boundary (below_boundary) are not believed.
    """
    if trusted_hops is not None:
        return upstream_results(headers, trusted_ids, from_domain, trusted_hops=trusted_hops).summary
    trusted = {t.strip().lower() for t in trusted_ids if t.strip()}
    if not trusted:
        return None
    parsed: list[authres.AuthenticationResultsHeader] = []
    winner: str | None = None
    for name, value in headers:
        if name.strip().lower() != A_R:
            continue
        header = _parse(value)
        if header is None or header.authserv_id not in trusted:
            continue
        if winner is None:
            winner = header.authserv_id
        if header.authserv_id == winner:
            parsed.append(header)
    if winner is None:
        return None
    results = [r for h in parsed for r in h.results if isinstance(r, authres.AuthenticationResult)]
    return _summary(results, source=f"upstream:{winner}", from_domain=from_domain)


def _summary(results: Iterable[authres.AuthenticationResult], *, source: str,
             from_domain: str | None) -> AuthSummary:
    spf = arc = dmarc = None
    spf_domain = header_from = policy = None
    dkim: list[DkimResult] = []
    for r in results:
        method, result = r.method.lower(), r.result.lower()
        if method == "spf" and spf is None:
            spf = result
            spf_domain = _domain_of(_prop(r, "smtp", "mailfrom")) or _domain_of(_prop(r, "smtp", "helo"))
        elif method == "dkim":
            d = _domain_of(_prop(r, "header", "d")) or _domain_of(_prop(r, "header", "i")) or ""
            dkim.append(DkimResult(domain=d, selector=(_prop(r, "header", "s") or "").lower(), result=result))
        elif method == "dmarc" and dmarc is None:
            dmarc = result
            header_from = _domain_of(_prop(r, "header", "from"))
            policy = (_prop(r, "policy", "dmarc") or _prop(r, "policy", "published-domain-policy"))
        elif method == "arc" and arc is None:
            arc = result
    fd = (from_domain or header_from or "").lower() or None
    dmarc_result = dmarc or "none"
    if dmarc_result == "pass" and fd and header_from and header_from != fd:
        # The upstream verdict is about another From than the one we see: it says nothing here.
        dmarc_result, policy = "none", None
    aligned_id = None
    if dmarc_result == "pass" and fd:
        aligned_id = next((f"dkim:{k.domain}" for k in dkim if k.result == "pass" and aligned(k.domain, fd)), None)
        if aligned_id is None and spf == "pass" and spf_domain and aligned(spf_domain, fd):
            aligned_id = f"spf:{spf_domain}"
    return AuthSummary(source=source, spf=spf or "none", spf_domain=spf_domain, dkim=tuple(dkim),
                       arc=arc or "none", dmarc=dmarc_result, dmarc_policy=policy and policy.lower(),
                       from_domain=fd, dmarc_aligned=aligned_id)


def aar_vouches(aar_value: str, from_domain: str, *, strict_dkim: bool = False) -> str | None:
    """Whether an ARC-Authentication-Results value (RFC 8617 4.1.1) shows a pass for the From domain.

    Returns "dkim:<d>" for an aligned DKIM pass, "dmarc:<from>" for a DMARC pass of that From,
    or None.
    """
    text = _AAR_INSTANCE.sub("", _unfold(aar_value), count=1)
    header = _parse(text)
    if header is None:
        return None
    fd = from_domain.lower()
    results = [r for r in header.results if isinstance(r, authres.AuthenticationResult)]
    for r in results:
        if r.method.lower() == "dkim" and r.result.lower() == "pass":
            d = _domain_of(_prop(r, "header", "d")) or _domain_of(_prop(r, "header", "i"))
            if d and aligned(d, fd, strict=strict_dkim):
                return f"dkim:{d}"
    for r in results:
        if r.method.lower() == "dmarc" and r.result.lower() == "pass":
            if _domain_of(_prop(r, "header", "from")) == fd:
                return f"dmarc:{fd}"
    return None


def _ascii(text: str) -> str:
    return _NON_ASCII.sub("?", text)


def _pvalue(text: str) -> str:
    """A property value authres will quote when needed: it writes anything with "@" unquoted."""
    return _ascii(text).replace("@", "?")[:255]


def _comment(text: str) -> str:
    """Text safe inside an RFC 5322 comment: printable ASCII without parentheses or backslash."""
    return _ascii(text).replace("(", "[").replace(")", "]").replace("\\", "/")


def own_results_header(summary: AuthSummary, authserv_id: str) -> str:
    """The value of our Authentication-Results header for a summary: ASCII, one line."""
    ctx = authres.all_features()
    results: list[authres.AuthenticationResult] = []

    spf = authres.SPFAuthenticationResult(result=_ascii(summary.spf or "none"))
    if summary.spf_domain:
        spf.smtp_mailfrom = _pvalue(summary.spf_domain)
    results.append(spf)

    if summary.dkim:
        for k in summary.dkim:
            r = authres.DKIMAuthenticationResult(result=_ascii(k.result or "none"))
            if k.domain:
                r.header_d = _pvalue(k.domain)
            if k.selector:
                r.header_s = _pvalue(k.selector)
            results.append(r)
    else:
        results.append(authres.DKIMAuthenticationResult(result="none"))

    dmarc = authres.dmarc.DMARCAuthenticationResult(result=_ascii(summary.dmarc or "none"))
    if summary.dmarc_policy:
        # "quarantine;pct=50": the policy word is the property, the rest a comment (RFC 7489 11.2).
        word, _, rest = summary.dmarc_policy.partition(";")
        if rest:
            dmarc.result_comment = _comment(rest.strip())
        if word.strip():
            dmarc.policy = _pvalue(word.strip())
    if summary.from_domain:
        dmarc.header_from = _pvalue(summary.from_domain)
    results.append(dmarc)

    results.append(authres.arc.ARCAuthenticationResult(result=_ascii(summary.arc or "none")))

    header = ctx.header(authserv_id=_ascii(authserv_id), results=results)
    if summary.source != "local":
        # Say where a result we did not compute ourselves came from (RFC 8601 2.2 allows CFWS here).
        header.authserv_id_comment = _comment(f"via {summary.source}")
    value: str = header.header_value()
    return _ascii(value.replace("\r", " ").replace("\n", " "))


def is_own_authserv_id(value: str, authserv_id: str) -> bool:
    """Whether an Authentication-Results value claims our authserv-id (to remove it: RFC 8601 5)."""
    want = authserv_id.strip().lower()
    if not want:
        return False
    token = _leading_authserv_id(_unfold(value))
    return token is not None and token.lower() == want


def _leading_authserv_id(text: str) -> str | None:
    """The authserv-id token at the start of a value, skipping whitespace and (nested) comments."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            depth = 0
            while i < n:
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
        else:
            break
    if i >= n:
        return None
    if text[i] == '"':
        # RFC 8601 2.2: authserv-id is a "value", which may be a quoted-string.
        end = text.find('"', i + 1)
        return text[i + 1:end] if end > i else None
    m = re.match(r"[^\s;()\"]+", text[i:])
    return m.group(0) if m else None
