"""Links: where the hrefs really go, compared with the brand's domains and their visible text."""
from __future__ import annotations

import re
from typing import Iterable
from urllib.parse import unquote

from ..domains import is_ip, lookalike, registered_domain
from ..model import Hit
from ..normalize import clean
from ..urls import host_of
from .action import FREE_HOSTING, FREE_HOSTING_HOSTS, SHORTENERS, landing, web_href
from .base import Context

# An open redirect: the real target rides in the query string.
_REDIRECT = re.compile(r"[?&](?:url|q|u|target|dest|destination|redirect|redirect_uri|link|goto|next)=(?:https?%3a|https?:)", re.I)
_DOMAIN_IN_TEXT = re.compile(r"(?:https?://)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})(?![a-z0-9-])", re.I)


class LinkCheck:
    name = "links"
    symbols = {
        "LINK_OFF_BRAND": "links go to domains that are not the brand's",
        "LINK_TEXT_HREF_MISMATCH": "the visible text shows one domain, the link goes to another",
        "LINK_LOOKALIKE_DOMAIN": "a link domain imitates a brand domain",
        "LINK_SHORTENER": "a link goes through a URL shortener or open redirect",
        "LINK_IP_LITERAL": "a link goes to a bare IP address",
        "LINK_PUNYCODE": "a link host uses punycode (xn--)",
        "LINK_BRAND_IN_PATH": "the brand's name in the path of a foreign link",
        "LINK_FREE_HOSTING": "a link to free web hosting, a cloud bucket or a form service",
        "LOGIN_FORM": "an HTML form asking for a password or posting to a foreign site",
    }

    def run(self, ctx: Context) -> Iterable[Hit]:
        brand = ctx.brand
        web = [link for link in ctx.msg.links if web_href(link.href)]
        off: dict[str, str] = {}
        on = off_links = 0
        found: dict[str, tuple[float, str]] = {}

        def add(symbol: str, strength: float, reason: str) -> None:
            if symbol not in found or found[symbol][0] < strength:
                found[symbol] = (strength, reason)

        for link in web[: ctx.max_links]:
            host, target = landing(link.href)  # a tracker or redirector: judged by where it lands
            if not host:
                continue
            if target != link.href and brand.trusts_link(host_of(link.href)) and not brand.trusts_link(host):
                add("LINK_SHORTENER", 0.7, f"redirect via {host_of(link.href)} to {host}")
            if is_ip(host):
                add("LINK_IP_LITERAL", 1.0, f"{host}")
                off.setdefault(host, link.href)
                off_links += 1
                continue
            reg = registered_domain(host)
            if brand.trusts_link(host):
                on += 1
                self._text_mismatch(ctx, link.text, host, add)
                continue
            off.setdefault(reg or host, link.href)
            off_links += 1
            if "xn--" in host:
                add("LINK_PUNYCODE", 1.0, host)
            look = lookalike(host, brand)
            if look is not None:
                add("LINK_LOOKALIKE_DOMAIN", 1.0, f"lookalike ({look.how}): {host} ~ {look.stem}")
            if reg in SHORTENERS:
                add("LINK_SHORTENER", 1.0, f"shortener {host}")
            elif _REDIRECT.search(link.href) or "/slink" in link.href.lower():
                add("LINK_SHORTENER", 0.7, f"redirect via {host}")
            if reg in FREE_HOSTING or host in FREE_HOSTING_HOSTS or brand.customer_hosted(host):
                add("LINK_FREE_HOSTING", 1.0, f"{host}")
            path = clean(unquote(target.lower().split(host, 1)[-1]))[:300]
            if look is None and ctx.names_brand(path):
                add("LINK_BRAND_IN_PATH", 1.0, f"{host}{path[:60]}")
            self._text_mismatch(ctx, link.text, host, add)

        # Foreign links are ordinary (lists, carriers, CDNs); they matter where a lure leads.
        # A prize only leads somewhere suspicious when a foreign sender offers it.
        leads = ctx.credential_lures or ("prize" in ctx.lures and not ctx.from_owned)
        if off and leads:
            share = off_links / (off_links + on)
            first = next(iter(off))
            add("LINK_OFF_BRAND", 0.4 + 0.6 * share, f"{len(off)} foreign domain(s), e.g. {first}")
        for form in ctx.msg.forms:
            target = host_of(form.action)
            if form.has_password:
                add("LOGIN_FORM", 1.0, f"form with a password field to {target or 'this page'}")
            elif ctx.credential_lures and target and not brand.trusts_link(target) \
                    and sum(t in ("text", "email", "tel", "number") for t in form.inputs) >= 2:
                # A search box has one field; a form asking for several details next to a
                # lure collects them for someone else.
                add("LOGIN_FORM", 0.6, f"form asking for details posts to {target}")
        for symbol, (strength, reason) in found.items():
            yield Hit(symbol=symbol, strength=strength, reason=reason)

    @staticmethod
    def _text_mismatch(ctx: Context, text: str, host: str, add) -> None:
        if not text or "." not in text:
            return
        m = _DOMAIN_IN_TEXT.search(text.strip())
        if not m:
            return
        shown = m.group(1).lower()
        shown_reg = registered_domain(shown)
        if not shown_reg or shown_reg == registered_domain(host):
            return
        # Only the brand's own domain shown over a foreign href: newsletters show their own
        # domains over click trackers all the time, which proves nothing.
        if ctx.brand.trusts_link(shown) and not ctx.brand.trusts_link(host):
            add("LINK_TEXT_HREF_MISMATCH", 1.0, f"shows {shown}, goes to {host}")
