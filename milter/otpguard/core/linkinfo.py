"""Where a link goes, in one word: for `otpguard explain` and the quarantine listing.

A view over the same data and lists the link check uses (core/checks/links.py), so an admin
sees the registered domain and the kind of place of every href. It scores nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

from .brand import BrandProfile
from .checks.links import FREE_HOSTING, FREE_HOSTING_HOSTS, SHORTENERS
from .domains import is_ip, lookalike, registered_domain
from .urls import host_of

# Categories, most telling first: a host that is both a shortener and punycode is a shortener.
CATEGORIES = ("brand", "lookalike", "ip-literal", "shortener", "free-hosting", "punycode", "foreign",
              "not-web")


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkInfo:
    href: str
    text: str
    source: str  # html | text | form | image | attachment
    host: str
    registered_domain: str
    category: str  # one of CATEGORIES


def _is_web(href: str) -> bool:
    h = href.strip().lower()
    return h.startswith(("http://", "https://", "//", "www.", "hxxp"))


def category(host: str, reg: str, brand: BrandProfile | None) -> str:
    """The kind of place a web host is, relative to the brand (None: no brand context)."""
    if is_ip(host):
        return "ip-literal"
    if brand is not None and brand.trusts_link(host):
        return "brand"
    if brand is not None and lookalike(host, brand) is not None:
        return "lookalike"
    if reg in SHORTENERS:
        return "shortener"
    if reg in FREE_HOSTING or host in FREE_HOSTING_HOSTS:
        return "free-hosting"
    if "xn--" in host:
        return "punycode"
    return "foreign"


def describe_link(href: str, text: str, source: str, brand: BrandProfile | None) -> LinkInfo:
    """One link: host, registered domain (Public Suffix List, offline) and category."""
    host = host_of(href) if _is_web(href) else ""
    if not host:
        return LinkInfo(href=href, text=text, source=source, host="", registered_domain="", category="not-web")
    reg = registered_domain(host)
    return LinkInfo(href=href, text=text, source=source, host=host, registered_domain=reg,
                    category=category(host, reg, brand))
