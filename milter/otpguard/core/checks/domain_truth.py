"""Domain truth: a brand From domain without the brand's signature, replies sent elsewhere."""
from __future__ import annotations

import ipaddress
import re
from typing import Iterable

from ..model import Hit
from .base import Context


class DomainTruthCheck:
    name = "domain_truth"
    symbols = {
        "FROM_BRAND_DOMAIN": "the From domain is one of the brand's own",
        "FROM_BRAND_UNSIGNED": "the From domain is the brand's but no brand DKIM signature is present",
        "BRAND_SIGNATURE_UNVERIFIED": "a brand DKIM signature is present but was not verified (information)",
        "REPLY_TO_OFF_BRAND": "the From domain is the brand's but replies go to a foreign domain",
        "FORGED_BRAND_HELO": "a relay greeted with a brand host name from a foreign or unnamed address",
        "ENVELOPE_OFF_BRAND": "the From domain is the brand's but the envelope sender is foreign",
    }

    def run(self, ctx: Context) -> Iterable[Hit]:
        brand = ctx.brand
        relay = ctx.relay
        if relay is not None and relay[0] == "forward":
            return  # the forwarder's own trace says nothing of the forwarded message's author
        if relay is not None:
            # A list copy: the list rewrote From; the author's domain is what the trace is
            # compared with (the list's MAIL FROM is skipped, its receiving host's SPF record is not).
            author = relay[1]
            claimed = [author.domain] if brand.owns(author.domain) else []
            if claimed and not ctx.brand_signed:
                if ctx.brand_signature_header is None:
                    yield Hit(symbol="FROM_BRAND_UNSIGNED", strength=1.0, reason=f"no DKIM signature by {claimed[0]}")
                envelope_domain = envelope_sender_domain(ctx)
                if envelope_domain and not brand.trusts_link(envelope_domain):
                    yield Hit(symbol="ENVELOPE_OFF_BRAND", strength=1.0, reason=f"envelope sender at {envelope_domain}")
            return
        claimed = [a.domain for a in ctx.msg.from_ + ctx.msg.reply_to if brand.owns(a.domain)]
        if not claimed:
            return
        if ctx.from_owned:
            yield Hit(symbol="FROM_BRAND_DOMAIN", strength=1.0, reason=f"from {ctx.from_domain}")
        # The brand signs all of its mail (d=amazon.<tld>): a brand address with no brand
        # signature at all was not sent by the brand, or was rewritten on the way. A signature
        # header that was not verified is no signature, and no evidence against either.
        if not ctx.brand_signed:
            if ctx.brand_signature_header is None:
                yield Hit(symbol="FROM_BRAND_UNSIGNED", strength=1.0, reason=f"no DKIM signature by {claimed[0]}")
            else:
                yield Hit(symbol="BRAND_SIGNATURE_UNVERIFIED", strength=1.0, reason=unverified_reason(ctx))
            # The brand bounces to its own domains (bounces.amazon.*, amazonses.com); an
            # unsigned brand From with a foreign envelope sender was sent by someone else.
            envelope_domain = envelope_sender_domain(ctx)
            if ctx.from_owned and envelope_domain and not brand.trusts_link(envelope_domain):
                yield Hit(symbol="ENVELOPE_OFF_BRAND", strength=1.0, reason=f"envelope sender at {envelope_domain}")
        forged = forged_helo(ctx)
        if forged:
            yield Hit(symbol="FORGED_BRAND_HELO", strength=1.0, reason=forged)
        if ctx.from_owned:
            foreign = [a.domain for a in ctx.msg.reply_to if a.domain and not brand.trusts_link(a.domain)]
            if foreign:
                yield Hit(symbol="REPLY_TO_OFF_BRAND", strength=1.0, reason=f"reply-to {foreign[0]}")


def unverified_reason(ctx: Context) -> str:
    """Why a brand signature present in the header does not count, in the words of the
    dkim= result of our Authentication-Results header when there is one."""
    signer = ctx.brand_signature_header
    auth = ctx.auth
    results = [d.result for d in auth.dkim if d.domain == signer] if auth is not None else []
    if results:
        return f"DKIM signature by {signer} not verified: dkim={results[0]}"
    return f"DKIM signature by {signer} not verified (not checked)"


# "from HELO (RDNS [IP])" as Postfix, Sendmail and most MTAs write it; and "from RDNS (HELO x)",
# often followed by "([IP])" (IronPort, Sendmail with a mismatched HELO).
_RECEIVED = re.compile(r"^\s*from\s+(\S+)\s+\((?:HELO\s+(\S+)\)(?:\s*\(\[(?:ipv6:)?([0-9a-f.:]+)\]\))?"
                       r"|([^\s()\[]*)\s*\[(?:ipv6:)?([0-9a-f.:]+)\])", re.I)
_MAX_RECEIVED = 12


def _public(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def forged_helo(ctx: Context) -> str | None:
    """A hop whose HELO names a brand host while its address resolves elsewhere or nowhere."""
    brand = ctx.brand
    hops: list[tuple[str, str, str]] = []
    env = ctx.envelope
    if env.helo and env.client_ip:
        hops.append((env.helo, (env.client_name or "unknown").strip("[]"), env.client_ip))
    for value in ctx.msg.header_all("received")[:_MAX_RECEIVED]:
        m = _RECEIVED.match(value)
        if not m:
            continue
        first, helo_form, helo_ip, rdns, ip = m.groups()
        if helo_form:  # "from RDNS (HELO name) ([IP])": the address, when written, is after the HELO
            hops.append((helo_form, first, helo_ip or ""))
        else:
            hops.append((first, rdns or "", ip or ""))
    for helo, rdns, ip in hops:
        helo = helo.lower().strip("[]").rstrip(".")
        if not brand.owns(helo):
            continue
        rdns = rdns.lower().rstrip(".")
        if ip and not _public(ip):
            continue  # the brand's internal hops
        if rdns == "unknown" or (rdns and not brand.trusts_link(rdns) and not rdns.startswith("[")):
            return f"HELO {helo} from {rdns or 'unknown'} [{ip}]"
    return None


_SPF_ENVELOPE = re.compile(r"envelope-from=<?\"?([^\s;>\"]+)|domain of (\S+@\S+?)\s+(?:designates|does not)", re.I)


_AR_MAILFROM = re.compile(r"\bsmtp\.mailfrom=\"?([^\s;\")]+)", re.I)


def envelope_sender_domain(ctx: Context) -> str | None:
    """The MAIL FROM domain: from the MTA, else as the receiving host recorded it.

    Offline, the receiving host's trace fields tell: Received-SPF, the smtp.mailfrom of its
    Authentication-Results, and last the Return-Path it wrote at delivery.
    """
    # A list copy: the list rewrote the envelope, so the MAIL FROM we were given and the trace
    # the list wrote at its own delivery tell nothing of the author; only the Received-SPF of
    # the host that took the original submission does.
    list_copy = bool(ctx.msg.header("list-id") or ctx.msg.header("list-post"))
    if ctx.envelope.mail_from and not list_copy:
        return ctx.envelope.mail_from.rpartition("@")[2].strip("<>").lower() or None
    for value in ctx.msg.header_all("received-spf")[:5]:
        m = _SPF_ENVELOPE.search(value)
        if m and (domain := (m.group(1) or m.group(2)).rpartition("@")[2].strip("<>").lower()):
            return domain
    if list_copy:
        return None
    for value in ctx.msg.header_all("authentication-results")[:5]:
        m = _AR_MAILFROM.search(value)
        if m and (domain := m.group(1).rpartition("@")[2].strip("<>").lower()):
            return domain
    rp = ctx.msg.return_path
    return rp.domain if rp is not None and rp.domain else None
