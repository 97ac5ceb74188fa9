"""Sender authentication of one message (SPF, DKIM, ARC, DMARC) over our own DNS layer."""
from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import ipaddress
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import dkim  # type: ignore[import-untyped]
import dkim.util  # type: ignore[import-untyped]
import spf  # type: ignore[import-untyped]

from .authresults import aar_vouches, aligned, organizational_domain
from .settings import AuthConfig
from .dnsio import DnsClient, DnsTempError
from ..core.model import AuthSummary, DkimResult, Envelope

log = logging.getLogger(__name__)

# RFC 6376 section 6.1: a verifier may limit how many signatures it tries, against resource
# exhaustion; the rest are reported as "policy" (RFC 8601 2.7.1: not acceptable to the ADMD).
MAX_SIGNATURES = 10
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_SIG_FALLBACK = re.compile(rb"^dkim-signature[ \t]*:", re.IGNORECASE | re.MULTILINE)
_TAG_D = re.compile(rb"(?:^|;)\s*d\s*=\s*([^;\s]+)", re.IGNORECASE)
_TAG_S = re.compile(rb"(?:^|;)\s*s\s*=\s*([^;\s]+)", re.IGNORECASE)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9-]{1,63}$")
_POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthDetail:
    """Everything verify() found: the summary, the local one before any ARC override, the ARC chain."""

    summary: AuthSummary
    local: AuthSummary
    arc_sealer: str | None = None  # d= of the newest ARC-Seal
    arc_first_sealer: str | None = None  # d= of the i=1 ARC-Seal (the original receiving hop)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DmarcRecord:
    """A parsed DMARC policy record (RFC 7489 section 6.3) and where it was found."""

    domain: str
    p: str
    sp: str | None = None
    pct: int = 100
    adkim: str = "r"
    aspf: str = "r"
    org_fallback: bool = False

    @property
    def effective(self) -> str:
        # RFC 7489 6.6.3: sp applies to subdomains when the record came from the org domain.
        return (self.sp or self.p) if self.org_fallback else self.p

    @property
    def describe(self) -> str:
        return self.effective if self.pct >= 100 else f"{self.effective};pct={self.pct}"


class DmarcPermError(Exception):
    """A DMARC record that cannot be used (RFC 7489 11.2 permerror)."""


def verify(raw: bytes, envelope: Envelope, *, dns: DnsClient, cfg: AuthConfig,
           budget_seconds: float, known_domains: Collection[str] = ()) -> AuthSummary:
    """Check SPF, every DKIM signature, ARC and DMARC of one message; never raises.

    known_domains are domains known to exist (the protected brands'): when the resolver says
    one of them does not exist, its results are temperror, not evidence (see _Visibility).
    """
    return verify_detail(raw, envelope, dns=dns, cfg=cfg, budget_seconds=budget_seconds,
                         known_domains=known_domains).summary


def verify_detail(raw: bytes, envelope: Envelope, *, dns: DnsClient, cfg: AuthConfig,
                  budget_seconds: float, known_domains: Collection[str] = ()) -> AuthDetail:
    """verify() with the evidence behind the summary; never raises."""
    notes: list[str] = []
    try:
        with dns.budget(budget_seconds):
            return _verify(raw, envelope, dns, cfg, notes, _Visibility(dns, known_domains, notes))
    except Exception:  # the last guard: a bug here must cost an auth result, not the message
        log.exception("sender authentication failed unexpectedly")
        failed = AuthSummary(source="local", spf="temperror", dmarc="temperror")
        return AuthDetail(summary=failed, local=failed, notes=(*notes, "internal error"))


class _Visibility:
    """Whether the resolver can see a known domain at all (one message's answers, cached).

    NXDOMAIN for a brand's own names (its DKIM key, its _dmarc record, its SPF record) is
    normally evidence: the key or policy is missing. But when the brand's organizational
    domain itself is NXDOMAIN (amazon.com "does not exist"), the resolver is broken or
    filtered: what it says about the brand is a temporary error (RFC 8601 2.7.1 temperror),
    never a failure. Only domains known to exist are asked about: for any other domain,
    NXDOMAIN is a real answer.
    """

    def __init__(self, dns: DnsClient, known: Collection[str], notes: list[str]) -> None:
        self._dns, self._notes = dns, notes
        self._known = frozenset(d.strip().rstrip(".").lower() for d in known if d.strip())
        self._seen: dict[str, bool] = {}

    def hidden(self, domain: str | None) -> bool:
        d = (domain or "").strip().rstrip(".").lower()
        if not d or not self._known or not _below_any(d, self._known):
            return False
        org = organizational_domain(d) or d
        if org not in self._seen:
            try:
                hidden = not self._dns.exists(org)
                why = "NXDOMAIN"
            except DnsTempError as exc:
                hidden, why = True, str(exc)
            self._seen[org] = hidden
            if hidden:
                self._notes.append(f"dns: the resolver cannot see {org} ({why}): its results are temperror")
        return self._seen[org]


def _below_any(domain: str, known: frozenset[str]) -> bool:
    d = domain
    while d:
        if d in known:
            return True
        _, _, d = d.partition(".")
    return False


def _verify(raw: bytes, envelope: Envelope, dns: DnsClient, cfg: AuthConfig,
            notes: list[str], visible: _Visibility | None = None) -> AuthDetail:
    visible = visible or _Visibility(dns, (), notes)
    from_domain, from_problem = _from_domain(raw)
    if from_problem:
        notes.append(from_problem)

    spf_result, spf_domain = _guarded("spf", lambda: check_spf(envelope, dns, receiver=cfg.authserv_id),
                                      ("permerror", _spf_identity(envelope)[1]), notes)
    if spf_result in ("none", "permerror") and visible.hidden(spf_domain):
        spf_result = "temperror"  # no SPF record seen because no name of the brand is seen
    dkim_results = _guarded("dkim", lambda: check_dkim(raw, dns, hidden=visible.hidden), (), notes)
    arc_result, sealer, first_sealer, first_aar = _guarded(
        "arc", lambda: check_arc(raw, dns), ("fail", None, None, None), notes)

    record: DmarcRecord | None = None
    if from_domain is None:
        dmarc, aligned_id = "permerror", None
    else:
        try:
            record = lookup_dmarc(from_domain, dns)
        except DnsTempError as exc:
            notes.append(f"dmarc: {exc}")
            dmarc, aligned_id = "temperror", None
        except DmarcPermError as exc:
            notes.append(f"dmarc: {exc}")
            dmarc, aligned_id = "permerror", None
        except Exception as exc:  # a bug must cost the DMARC result only
            log.warning("dmarc check failed: %s", exc, exc_info=True)
            notes.append(f"dmarc: internal error {exc.__class__.__name__}")
            dmarc, aligned_id = "temperror", None
        else:
            if record is None and visible.hidden(from_domain):
                dmarc, aligned_id = "temperror", None  # "no policy" from a resolver that sees no brand
            else:
                dmarc, aligned_id = evaluate_dmarc(from_domain, record, spf_result, spf_domain, dkim_results)

    local = AuthSummary(source="local", spf=spf_result, spf_domain=spf_domain, dkim=dkim_results,
                        arc=arc_result, dmarc=dmarc, dmarc_policy=record.describe if record else None,
                        from_domain=from_domain, dmarc_aligned=aligned_id)
    summary = local
    trusted = {s.lower() for s in cfg.trusted_arc_sealers}
    # RFC 8617 section 7.2: a receiver may use the AAR of an ARC chain it trusts to override a
    # DMARC fail caused by forwarding (mailing lists rewrite subjects and footers).
    if (dmarc in ("fail", "temperror", "none") and from_domain and arc_result == "pass"
            and sealer in trusted and first_sealer in trusted and first_aar):
        vouched = aar_vouches(first_aar, from_domain, strict_dkim=bool(record and record.adkim == "s"))
        if vouched:
            summary = dataclasses.replace(local, dmarc="pass", dmarc_aligned=vouched, source=f"arc:{sealer}")
        else:
            notes.append(f"arc: trusted chain by {sealer} shows no pass for {from_domain}")
    elif arc_result == "pass" and dmarc != "pass" and sealer and sealer not in trusted:
        notes.append(f"arc: sealer {sealer} not trusted")
    return AuthDetail(summary=summary, local=local, arc_sealer=sealer, arc_first_sealer=first_sealer,
                      notes=tuple(notes))


def _guarded(method: str, run: Callable[[], Any], fallback: Any, notes: list[str]) -> Any:
    """Run one method; an unexpected library error costs that method only (logged, noted)."""
    try:
        return run()
    except Exception as exc:
        log.warning("%s check failed: %s: %s", method, exc.__class__.__name__, exc, exc_info=True)
        notes.append(f"{method}: internal error {exc.__class__.__name__}")
        return fallback


# -- From -----------------------------------------------------------------------------------

_HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.default)


def _from_domain(raw: bytes) -> tuple[str | None, str | None]:
    """The domain of the single RFC 5322 From address, or None and what is wrong with it."""
    head = _HEADER_END.split(raw, maxsplit=1)[0] + b"\r\n\r\n"
    try:
        msg = _HEADER_PARSER.parsebytes(head)
        values = msg.get_all("From") or []
        # RFC 7489 6.6.1: DMARC needs exactly one author domain; several From fields or
        # addresses make the author ambiguous.
        if len(values) != 1:
            return None, f"from: {len(values)} From header fields"
        addresses: tuple[Any, ...] = tuple(getattr(values[0], "addresses", ()))
    except Exception as exc:  # the email package has raised on hostile headers before
        return None, f"from: unparsable ({exc.__class__.__name__})"
    if len(addresses) != 1:
        return None, f"from: {len(addresses)} addresses"
    domain = _normal_domain(str(addresses[0].domain or ""))
    if domain is None:
        return None, "from: no usable domain"
    return domain, None


def _normal_domain(value: str) -> str | None:
    d = value.strip().rstrip(".").lower()
    if not d:
        return None
    if not d.isascii():
        try:
            d = d.encode("idna").decode("ascii")  # U-labels to A-labels for DNS and comparison
        except UnicodeError:
            return None
    return d if _HOSTNAME.match(d) else None


# -- SPF ------------------------------------------------------------------------------------

class _SpfQuery(spf.query):  # type: ignore[misc]
    """pyspf's evaluator with its DNS routed through our client, per instance (no module globals)."""

    def __init__(self, client: DnsClient, *, i: str, s: str, h: str, receiver: str) -> None:
        self._client = client
        super().__init__(i=i, s=s, h=h, receiver=receiver, querytime=0)

    def dns(self, name: Any, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list[Any]:
        domain = str(name or "").rstrip(".").lower()
        # RFC 7208 4.3: a malformed name yields no records (pyspf's own rule, kept).
        if not domain or not all(0 < len(label) < 64 for label in domain.split(".")):
            return []
        key = (domain, qtype)
        cached: list[Any] | None = self.cache.get(key)
        if cached is None:
            try:
                cached = self._fetch(domain, qtype)
            except DnsTempError as exc:
                raise spf.TempError(f"DNS {exc}") from exc
            self.cache[key] = cached
        if not cached and not ignore_void:
            # RFC 7208 4.6.4: more than two void lookups is a permerror.
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        return list(cached)  # pyspf sorts MX lists in place

    def _fetch(self, domain: str, qtype: str) -> list[Any]:
        c = self._client
        if qtype == "TXT":
            return [(t,) for t in c.txt_bytes(domain)]
        if qtype == "A":
            return list(c.a(domain))
        if qtype == "AAAA":
            return list(c.aaaa(domain))
        if qtype == "MX":
            return list(c.mx(domain))
        if qtype == "PTR":
            return list(c.ptr(domain))
        # RFC 7208 3.1 and 14.1: RR type 99 (SPF) is no longer used; nothing else is needed.
        return []


def _spf_identity(envelope: Envelope) -> tuple[str | None, str | None]:
    """The sender to check and its domain: MAIL FROM, or postmaster@HELO when it is empty."""
    mail_from = (envelope.mail_from or "").strip()
    if mail_from.startswith("<") and mail_from.endswith(">"):
        mail_from = mail_from[1:-1].strip()
    helo = (envelope.helo or "").strip().rstrip(".")
    if mail_from:
        local, at, domain = mail_from.rpartition("@")
        return (mail_from, _normal_domain(domain)) if at and local else (None, None)
    # RFC 7208 2.4: with a null reverse-path the identity is postmaster@<HELO>.
    if not helo or helo.startswith("[") or _is_ip(helo):
        return None, None  # RFC 7208 2.3: an address literal HELO has no SPF identity
    helo_domain = _normal_domain(helo)
    return (f"postmaster@{helo_domain}", helo_domain) if helo_domain else (None, None)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def check_spf(envelope: Envelope, dns: DnsClient, *, receiver: str = "otpguard") -> tuple[str, str | None]:
    """The SPF result (RFC 7208 2.6 words) and the domain checked."""
    sender, domain = _spf_identity(envelope)
    ip = (envelope.client_ip or "").strip()
    if ip.lower().startswith("ipv6:"):
        ip = ip[5:]
    if sender is None or domain is None:
        return "none", domain
    if not ip or not _is_ip(ip):
        return "none", domain  # offline scan: nobody connected, nothing to authorise
    helo = (envelope.helo or "").strip().rstrip(".") or domain
    query = _SpfQuery(dns, i=ip, s=sender, h=helo, receiver=receiver)
    result, _code, _explanation = query.check()
    return str(result), domain


# -- DKIM -----------------------------------------------------------------------------------

class _DebugLogger:
    """dkimpy logs every bad signature at error level; on the Internet that is routine: debug."""

    def __init__(self, target: logging.Logger) -> None:
        self._target = target

    def __getattr__(self, _level: str) -> Callable[..., None]:
        return self._target.debug


_DKIM_LOG = _DebugLogger(logging.getLogger("otpguard.dkimpy"))


class _KeyFetcher:
    """dkimpy's dnsfunc on our client; remembers what each key name returned."""

    def __init__(self, client: DnsClient) -> None:
        self._client = client
        self.found: dict[str, bytes | None] = {}

    def __call__(self, name: bytes | str, timeout: float = 5) -> bytes | None:
        try:
            qname = name.decode("ascii") if isinstance(name, bytes) else name
        except UnicodeDecodeError:
            return None
        records = self._client.txt_bytes(qname)  # DnsTempError goes past dkimpy on purpose
        # RFC 6376 3.6.2.2: with several TXT records the verifier may pick one; pick a key.
        key = next((r for r in records if b"p=" in r), records[0] if records else None)
        self.found[qname.rstrip(".").lower()] = key
        return key


def check_dkim(raw: bytes, dns: DnsClient, *,
               hidden: Callable[[str], bool] | None = None) -> tuple[DkimResult, ...]:
    """Verify every DKIM-Signature, top to bottom, each as pass/fail/permerror/temperror/policy.

    hidden(domain) says the resolver cannot see that signing domain at all: a missing key
    there is temperror (the DNS failed), not permerror (the key is gone).
    """
    try:
        message = dkim.DKIM(raw, logger=_DKIM_LOG, minkey=1024)
    except Exception as exc:  # dkimpy cannot even split the headers: no signature is usable
        head = _HEADER_END.split(raw, maxsplit=1)[0]
        count = len(_SIG_FALLBACK.findall(head))
        log.debug("dkimpy cannot parse message (%s); %d signatures unusable", exc, count)
        return tuple(DkimResult(domain="", selector="", result="permerror") for _ in range(count))
    values = [v for k, v in message.headers if k.lower() == b"dkim-signature"]
    results = []
    for idx, value in enumerate(values):
        if idx >= MAX_SIGNATURES:
            d, s = _loose_tags(value)
            results.append(DkimResult(domain=d, selector=s, result="policy"))
            continue
        results.append(_verify_signature(message, idx, value, dns, hidden))
    return tuple(results)


def _loose_tags(value: bytes) -> tuple[str, str]:
    d, s = _TAG_D.search(value), _TAG_S.search(value)
    return (_text(d.group(1)) if d else "", _text(s.group(1)) if s else "")


def _text(b: bytes) -> str:
    return b.decode("ascii", "replace").strip().rstrip(".").lower()


def _verify_signature(message: dkim.DKIM, idx: int, value: bytes, dns: DnsClient,
                      hidden: Callable[[str], bool] | None = None) -> DkimResult:
    try:
        tags = dkim.util.parse_tag_value(value)
    except Exception:
        d, s = _loose_tags(value)
        return DkimResult(domain=d, selector=s, result="permerror")
    domain, selector = _text(tags.get(b"d", b"")), _text(tags.get(b"s", b""))
    if not domain or not selector:
        return DkimResult(domain=domain, selector=selector, result="permerror")
    signed = [h.strip().lower() for h in tags.get(b"h", b"").split(b":")]
    if b"from" not in signed:
        # RFC 6376 6.1.1: a signature that does not cover From must be ignored (PERMFAIL).
        return DkimResult(domain=domain, selector=selector, result="permerror")
    if tags.get(b"a", b"").strip().lower() == b"rsa-sha1":
        # RFC 8301 3.1: rsa-sha1 must not be used for verifying any more.
        return DkimResult(domain=domain, selector=selector, result="permerror")
    fetcher = _KeyFetcher(dns)
    try:
        ok = bool(message.verify(idx=idx, dnsfunc=fetcher))
    except DnsTempError as exc:
        log.debug("dkim %s/%s: %s", domain, selector, exc)
        return DkimResult(domain=domain, selector=selector, result="temperror")
    except dkim.ValidationError as exc:
        # RFC 6376 6.1.3: a body hash mismatch is a failed signature; other field errors are
        # PERMFAILs of a malformed signature.
        result = "fail" if "body hash mismatch" in str(exc) else "permerror"
        return DkimResult(domain=domain, selector=selector, result=result)
    except Exception as exc:  # DKIMException and dkimpy's own bugs on hostile input
        log.debug("dkim %s/%s: %s: %s", domain, selector, exc.__class__.__name__, exc)
        return DkimResult(domain=domain, selector=selector, result="permerror")
    if ok:
        return DkimResult(domain=domain, selector=selector, result="pass")
    result = _why_not(fetcher)
    if result == "permerror" and None in fetcher.found.values() and hidden is not None and hidden(domain):
        result = "temperror"
    return DkimResult(domain=domain, selector=selector, result=result)


def _why_not(fetcher: _KeyFetcher) -> str:
    """fail for a signature that does not verify; permerror when there was no usable key."""
    for name, key in fetcher.found.items():
        if key is None:
            return "permerror"  # RFC 6376 6.1.2: no key for signature
        try:
            dkim.evaluate_pk(name.encode("ascii"), key)
        except Exception:
            return "permerror"  # revoked (empty p=) or unparsable key: RFC 6376 3.6.1
    return "fail"


# -- ARC ------------------------------------------------------------------------------------

def check_arc(raw: bytes, dns: DnsClient) -> tuple[str, str | None, str | None, str | None]:
    """ARC chain validation (RFC 8617 5.2): result, newest sealer, i=1 sealer, i=1 AAR value."""
    head = _HEADER_END.split(raw, maxsplit=1)[0].lower()
    if b"arc-seal" not in head:
        return "none", None, None, None
    fetcher = _KeyFetcher(dns)
    try:
        cv, sets, _reason = dkim.arc_verify(raw, logger=_DKIM_LOG, dnsfunc=fetcher)
    except DnsTempError as exc:
        log.debug("arc: %s", exc)
        return "temperror", None, None, None
    sealer = first_sealer = first_aar = None
    if sets:
        newest, oldest = sets[0], sets[-1]
        sealer = _text(newest.get("as-domain", b"")) or None
        if oldest.get("instance") == 1:
            first_sealer = _text(oldest.get("as-domain", b"")) or None
            aar = oldest.get("aar-value")
            first_aar = aar.decode("utf-8", "replace") if isinstance(aar, bytes) else None
    if cv == dkim.CV_Pass:
        return "pass", sealer, first_sealer, first_aar
    if cv == dkim.CV_None:
        return "none", sealer, first_sealer, first_aar
    return "fail", sealer, first_sealer, first_aar  # CV_Fail, or None for a chain ended by cv=fail


# -- DMARC ----------------------------------------------------------------------------------

def parse_dmarc(text: str) -> dict[str, str] | None:
    """The tags of a DMARC record, or None when it is not one (RFC 7489 6.4: v=DMARC1 first)."""
    parts = [p.strip() for p in text.split(";")]
    version = parts[0].replace(" ", "").replace("\t", "") if parts else ""
    if version.lower() != "v=dmarc1":
        return None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        key, eq, val = part.partition("=")
        if eq and key.strip():
            tags.setdefault(key.strip().lower(), val.strip())
    return tags


def _record(domain: str, tags: dict[str, str], org_fallback: bool) -> DmarcRecord:
    p = tags.get("p", "").lower()
    sp = tags.get("sp", "").lower() or None
    if p not in _POLICIES or (sp is not None and sp not in _POLICIES):
        # RFC 7489 6.3: a bad p/sp with a rua is read as p=none; without one, no DMARC at all.
        if "rua" in tags:
            p, sp = "none", None
        else:
            raise DmarcPermError(f"_dmarc.{domain}: invalid policy p={p!r} sp={sp!r}")
    try:
        pct = int(tags.get("pct", "100"))
    except ValueError:
        pct = 100
    pct = pct if 0 <= pct <= 100 else 100
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    return DmarcRecord(domain=domain, p=p, sp=sp, pct=pct, adkim=adkim, aspf=aspf, org_fallback=org_fallback)


def lookup_dmarc(from_domain: str, dns: DnsClient) -> DmarcRecord | None:
    """Policy discovery (RFC 7489 6.6.3): the From domain, then its organizational domain."""
    found = _records_at(from_domain, dns)
    if found is None:
        org = organizational_domain(from_domain)
        if org and org != from_domain:
            found = _records_at(org, dns)
            if found is not None:
                return _record(org, found, org_fallback=True)
        return None
    return _record(from_domain, found, org_fallback=False)


def _records_at(domain: str, dns: DnsClient) -> dict[str, str] | None:
    parsed = [t for t in (parse_dmarc(r) for r in dns.txt(f"_dmarc.{domain}")) if t is not None]
    if len(parsed) > 1:
        # RFC 7489 6.6.3 step 4: several records end policy discovery; report the broken policy.
        raise DmarcPermError(f"_dmarc.{domain}: {len(parsed)} DMARC records")
    return parsed[0] if parsed else None


def evaluate_dmarc(from_domain: str, record: DmarcRecord | None, spf_result: str, spf_domain: str | None,
                   dkim_results: tuple[DkimResult, ...]) -> tuple[str, str | None]:
    """The DMARC result and the aligned identifier that passed (RFC 7489 3.1 and 6.6.2)."""
    if record is None:
        return "none", None
    strict_dkim, strict_spf = record.adkim == "s", record.aspf == "s"
    for k in dkim_results:
        if k.result == "pass" and aligned(k.domain, from_domain, strict=strict_dkim):
            return "pass", f"dkim:{k.domain}"
    if spf_result == "pass" and spf_domain and aligned(spf_domain, from_domain, strict=strict_spf):
        return "pass", f"spf:{spf_domain}"
    # An aligned method we could not finish might have passed: say temperror, not fail, so a
    # DNS hiccup never turns genuine mail into a DMARC failure.
    if any(k.result == "temperror" and aligned(k.domain, from_domain, strict=strict_dkim) for k in dkim_results):
        return "temperror", None
    if spf_result == "temperror" and spf_domain and aligned(spf_domain, from_domain, strict=strict_spf):
        return "temperror", None
    return "fail", None
