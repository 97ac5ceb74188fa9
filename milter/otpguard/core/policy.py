"""Allow and deny lists: the admin's exceptions, as symbols with a reason.

An entry is keyed on something a sender cannot simply write into a message: an identity that
authentication proved (a DKIM signature that verified, an aligned DMARC pass, an SPF pass for
the envelope sender), the address of the SMTP client, or the recipients. An allow entry keyed
on the From header alone is refused: anyone can write any From, so it would let every spoof
of that domain through (the reason phishers forge brand From addresses in the first place).

Pure: text in, entries out; facts in, hits out. config.py reads the files (and again on SIGHUP).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import ProfileError
from .model import AuthSummary, Envelope, Hit

ALLOW, DENY = "allow", "deny"
SYMBOLS = {
    "POLICY_ALLOW": "an entry of the allow list matched (authenticated sender, client address or recipient)",
    "POLICY_DENY": "an entry of the deny list matched",
}
SYMBOL_OF = {ALLOW: "POLICY_ALLOW", DENY: "POLICY_DENY"}

# Entry kinds, what they match, and whether the fact is authenticated.
KINDS = {
    "dkim": "a DKIM signature by this domain (or a subdomain) that verified (dkim=pass)",
    "dmarc": "an aligned DMARC pass for this From domain (or a subdomain)",
    "spf": "an SPF pass for this envelope sender domain (or a subdomain)",
    "ip": "the SMTP client address: an IP address or a CIDR network",
    "rcpt": "a recipient address (allow: every recipient must be listed)",
    "rcpt_domain": "a recipient domain (allow: every recipient must be in a listed domain)",
    "from": "the From header domain (or a subdomain), unauthenticated: deny lists only",
}
AUTH_KINDS = ("dkim", "dmarc", "spf")
RECIPIENT_KINDS = ("rcpt", "rcpt_domain")
REFUSED_IN_ALLOW = {
    "from": "an allow entry on the From domain would let every spoof of that domain through "
            "(anyone can write any From): use dmarc:{value} (an aligned DMARC pass) or dkim:{value}",
}
# A list is a file an admin edits; a bound keeps a wrong path (a mailbox, a log) from being read whole.
MAX_LIST_BYTES = 4 * 1024 * 1024

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One line of a list file: `kind:value`."""

    kind: str
    value: str
    line: int
    network: Network | None = None

    @property
    def spelling(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyLists:
    """The allow and deny entries in force."""

    allow: tuple[Entry, ...] = ()
    deny: tuple[Entry, ...] = ()

    @property
    def needs_auth(self) -> bool:
        """A deny entry on an authenticated identity can match any message: every message then
        needs authentication, not only the ones that claim a brand."""
        return any(e.kind in AUTH_KINDS for e in self.deny)


def _domain(value: str) -> str | None:
    d = value.strip().rstrip(".").lower()
    if not d or " " in d or "@" in d or ".." in d:
        return None
    try:
        d = d.encode("idna").decode("ascii") if not d.isascii() else d
    except UnicodeError:
        return None
    return d


def parse_entry(text: str, *, which: str) -> Entry:
    """One entry; ValueError says what is wrong with it."""
    kind, sep, value = text.partition(":")
    kind, value = kind.strip().lower(), value.strip()
    if not sep or kind not in KINDS:
        raise ValueError(f"{text!r}: expected kind:value with kind one of {', '.join(KINDS)}")
    if which == ALLOW and kind in REFUSED_IN_ALLOW:
        raise ValueError(f"{text!r} refused: " + REFUSED_IN_ALLOW[kind].format(value=value or "DOMAIN"))
    if kind == "ip":
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{text!r}: not an IP address or CIDR network") from None
        return Entry(kind=kind, value=str(network), line=0, network=network)
    if kind == "rcpt":
        local, at, dom = value.rpartition("@")
        domain = _domain(dom) if at and local else None
        if domain is None:
            raise ValueError(f"{text!r}: not an address (local@domain)")
        return Entry(kind=kind, value=f"{local.lower()}@{domain}", line=0)
    domain = _domain(value)
    if domain is None:
        raise ValueError(f"{text!r}: not a domain name")
    return Entry(kind=kind, value=domain, line=0)


def parse_list(text: str, *, which: str, file: str | Path) -> tuple[Entry, ...]:
    """The entries of a list file: one `kind:value` per line, `#` starts a comment.
    Errors name the file and the line (ProfileError; config.py turns it into a ConfigError)."""
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            entry = parse_entry(line, which=which)
        except ValueError as exc:
            raise ProfileError(file, f"line {number}", str(exc)) from None
        entries.append(Entry(kind=entry.kind, value=entry.value, line=number, network=entry.network))
    return tuple(entries)


def load_list(path: Path, *, which: str, config_file: str | Path, key: str) -> tuple[Entry, ...]:
    """Read and parse one list file; errors name the list file and line, or the config key."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_LIST_BYTES + 1)
    except OSError as exc:
        raise ProfileError(config_file, key, f"cannot read {which} list {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_LIST_BYTES:
        raise ProfileError(path, "", f"larger than {MAX_LIST_BYTES} bytes: is this a list file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(path, "", f"not UTF-8 text: {exc}") from None
    return parse_list(text, which=which, file=path)


def _at_or_below(name: str | None, domain: str) -> bool:
    n = (name or "").strip().rstrip(".").lower()
    return bool(n) and (n == domain or n.endswith("." + domain))


def _client(envelope: Envelope) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    ip = (envelope.client_ip or "").strip()
    if ip.lower().startswith("ipv6:"):
        ip = ip[5:]
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _matches(entry: Entry, auth: AuthSummary | None, envelope: Envelope, from_domain: str | None) -> bool:
    kind = entry.kind
    if kind == "dkim":
        return auth is not None and any(d.result == "pass" and _at_or_below(d.domain, entry.value) for d in auth.dkim)
    if kind == "dmarc":
        return auth is not None and auth.dmarc == "pass" and _at_or_below(auth.from_domain, entry.value)
    if kind == "spf":
        return auth is not None and auth.spf == "pass" and _at_or_below(auth.spf_domain, entry.value)
    if kind == "ip":
        ip = _client(envelope)
        return ip is not None and entry.network is not None and ip in entry.network
    if kind == "from":
        return _at_or_below(from_domain, entry.value)
    return False


def _recipient_entry(entries: Iterable[Entry], rcpt: str) -> Entry | None:
    address = rcpt.strip().strip("<>").strip().lower()
    domain = address.rpartition("@")[2]
    for e in entries:
        if (e.kind == "rcpt" and e.value == address) or (e.kind == "rcpt_domain" and domain == e.value):
            return e
    return None


def _first_match(entries: tuple[Entry, ...], which: str, auth: AuthSummary | None, envelope: Envelope,
                 from_domain: str | None) -> Entry | None:
    for e in entries:
        if e.kind not in RECIPIENT_KINDS and _matches(e, auth, envelope, from_domain):
            return e
    rcpt_entries = [e for e in entries if e.kind in RECIPIENT_KINDS]
    if not rcpt_entries or not envelope.rcpt_to:
        return None
    found = [_recipient_entry(rcpt_entries, r) for r in envelope.rcpt_to]
    # One message, one verdict: an allow entry exempts it only when it exempts every
    # recipient; a deny entry applies when it names any of them.
    if which == ALLOW:
        return found[0] if all(found) else None
    return next((e for e in found if e is not None), None)


def _reason(entry: Entry, which: str) -> str:
    # The reasons header is visible to every recipient: never name a recipient in it.
    shown = entry.kind if entry.kind in RECIPIENT_KINDS else entry.spelling
    return f"{which} list line {entry.line}: {shown}"


def match(lists: PolicyLists, *, auth: AuthSummary | None, envelope: Envelope,
          from_domain: str | None) -> tuple[list[Hit], tuple[str, ...]]:
    """Hits of the allow and deny lists (at most one each) and what matched ("allow:dkim")."""
    hits: list[Hit] = []
    matched: list[str] = []
    for which, entries in ((ALLOW, lists.allow), (DENY, lists.deny)):
        if not entries:
            continue
        entry = _first_match(entries, which, auth, envelope, from_domain)
        if entry is not None:
            hits.append(Hit(symbol=SYMBOL_OF[which], strength=1.0, reason=_reason(entry, which)))
            matched.append(f"{which}:{entry.kind}")
    return hits, tuple(matched)


def recipient_domain(rcpts: Iterable[str], domains: Iterable[str]) -> str | None:
    """The one configured recipient domain that every recipient is in, else None (mixed or
    unlisted recipients get the global policy: one message has one set of actions)."""
    wanted = set(domains)
    seen = {r.strip().strip("<>").strip().lower().rpartition("@")[2] for r in rcpts}
    if len(seen) == 1:
        (only,) = seen
        return only if only in wanted else None
    return None
