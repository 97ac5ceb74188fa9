"""Domains: registered domain by the Public Suffix List (offline), and lookalike tests."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

import tldextract
from ada_url import URL, HostType

from .brand import BrandProfile
from .normalize import clean, fold_lookalike, skeleton

EXTRA_PUBLIC_SUFFIXES = ("com.be",)


@lru_cache(maxsize=1)
def psl() -> tldextract.TLDExtract:
    """The one Public Suffix List reader of the process (bundled snapshot, no network)."""
    # The bundled suffix list only: no download at run time, no cache directory written.
    # com.be is a public suffix in practice (amazon.com.be) but missing from the bundled snapshot.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True,
                                 extra_suffixes=EXTRA_PUBLIC_SUFFIXES)


@lru_cache(maxsize=65536)
def registered_domain(host: str) -> str:
    """The registrable domain of a host ('' for IP literals and bare suffixes)."""
    host = host.strip().rstrip(".").lower()
    if not host or is_ip(host):
        return ""
    ext = psl()(host)
    if ext.top_domain_under_public_suffix:
        return ext.top_domain_under_public_suffix
    if not ext.suffix and "." in host:
        # The PSL's default rule "*": an unlisted TLD (.test, .internal) is a public suffix.
        return ".".join(host.split(".")[-2:])
    return ""


@lru_cache(maxsize=65536)
def split_host(host: str) -> tuple[str, str, str]:
    """(subdomain, registrable label, public suffix) of a host."""
    host = host.strip().rstrip(".").lower()
    ext = psl()(host)
    if not ext.suffix and "." in host:
        labels = host.split(".")
        return ".".join(labels[:-2]), labels[-2], labels[-1]
    return ext.subdomain, ext.domain, ext.suffix


def host_in(host: str, domains: frozenset[str] | tuple[str, ...]) -> bool:
    """Is host one of the domains or a subdomain of one? (Immune to PSL gaps like com.be.)"""
    host = host.lower().rstrip(".")
    while host:
        if host in domains:
            return True
        _, _, host = host.partition(".")
    return False


def is_ip(host: str) -> bool:
    """Is host an IP address as a browser reads one: IPv6, dotted quads, and every IPv4 form
    the WHATWG host parser accepts (one integer, hex or octal parts, fewer than four parts:
    3232235777, 0x7f.1, 0300.0250.0.1), by ada-url's parser."""
    h = host.strip("[]")
    if ":" not in h and not h[:1].isdigit():
        return False  # every IPv4 form starts with a digit and IPv6 has colons: no exception to pay for
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        pass
    if ":" in h or "/" in h or "\\" in h or "@" in h:
        return False
    try:
        return URL(f"http://{h}/").host_type == HostType.IPV4
    except ValueError:
        return False


def unpunycode(host: str) -> str:
    """Decode IDNA labels (xn--) to Unicode; undecodable labels stay as they are."""
    if "xn--" not in host:
        return host
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                pass
        labels.append(label)
    return ".".join(labels)


def osa_distance(a: str, b: str, limit: int = 3) -> int:
    """Optimal string alignment distance (Levenshtein plus adjacent transpositions), capped."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    # A bound before the table: one edit takes at most one kind of letter out of a string and
    # brings at most one in (a transposition neither), so letters one side has and the other
    # lacks each cost an edit. Most tokens compared with a brand's stem fail here, in C.
    sa, sb = set(a), set(b)
    if len(sa - sb) > limit or len(sb - sa) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


@dataclass(frozen=True, slots=True)
class Lookalike:
    domain: str
    stem: str
    how: str  # "brand in label", "typo", "homoglyph", "brand in subdomain", "punycode"


def _fold(text: str) -> str:
    return fold_lookalike(skeleton(clean(text)))


_fold_stem = lru_cache(maxsize=256)(_fold)  # a brand's stems: the same for every host


@lru_cache(maxsize=16384)
def _lookalike(host: str, stems: tuple[str, ...], owned: frozenset[str]) -> Lookalike | None:
    host = host.lower().rstrip(".")
    reg = registered_domain(host)
    if not reg or reg in owned or host_in(host, owned):
        return None
    sub, label, _suffix = split_host(host)
    punycode = "xn--" in host
    uhost = unpunycode(host)
    ulabel = unpunycode(label)
    flabel = _fold(ulabel)
    tokens = [t for t in re.split(r"[-_]+", flabel) if t] + [flabel.replace("-", "")]
    sub_tokens = re.split(r"[.\-_]+", _fold(unpunycode(sub))) if sub else []
    for stem in stems:
        fstem = _fold_stem(stem)
        if flabel == fstem:
            how = "punycode" if punycode else ("homoglyph" if ulabel != stem else "same name, other suffix")
            return Lookalike(domain=host, stem=stem, how=how)
        for tok in tokens:
            if fstem in tok:
                return Lookalike(domain=host, stem=stem, how="brand in name")
            if len(tok) >= 5 and osa_distance(tok, fstem, 2) <= (1 if len(fstem) < 8 else 2):
                return Lookalike(domain=host, stem=stem, how="typo" if not punycode else "punycode")
        for t in sub_tokens:
            if fstem == t or (len(t) >= 5 and (fstem in t or osa_distance(t, fstem, 1) <= 1)):
                return Lookalike(domain=host, stem=stem, how="brand in subdomain")
        if punycode and fstem in _fold(uhost):
            return Lookalike(domain=host, stem=stem, how="punycode")
    return None


def lookalike(host: str, brand: BrandProfile) -> Lookalike | None:
    """Does this host imitate one of the brand's domains (and is not one of them)?"""
    if not host or is_ip(host):
        return None
    return _lookalike(host, brand.stems, _owned(brand))


_OWNED: dict[int, tuple[object, frozenset[str]]] = {}


def _owned(brand: BrandProfile) -> frozenset[str]:
    """The brand's own domains and the names its family holds (infrastructure, sending domains,
    customer-space apexes): never lookalikes of the brand."""
    found = _OWNED.get(id(brand))
    if found is None or found[0] is not brand:
        found = _OWNED[id(brand)] = (brand, frozenset(brand.domains) | brand.family_registrations())
    return found[1]
