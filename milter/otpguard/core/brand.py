"""Brand profiles: what a brand is called, which domains are its own, where it sends from, which of
its name space anyone can use, its phone numbers."""
from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import ProfileError
from .normalize import clean


@dataclass(frozen=True, slots=True, kw_only=True)
class BrandProfile:
    id: str
    display: str
    # Words whose mention claims the brand on their own ("amazon", "アマゾン").
    names: tuple[str, ...]
    # Product words that claim the brand only beside a main name or a lure ("prime", "kindle").
    products: tuple[str, ...]
    # Registered domains (by the Public Suffix List) that belong to the brand.
    domains: tuple[str, ...]
    # Domains the brand sends through or links to, that never claim to be the brand by themselves.
    infrastructure_domains: tuple[str, ...]
    # Domains outside `domains` that the brand itself sends mail from (a service's notices:
    # sns.amazonaws.com, amazonses.com bounces). Authenticated, such mail is the brand's own.
    sending_domains: tuple[str, ...] = ()
    # Host patterns (shell globs) of brand space anyone can fill: a customer's bucket, CDN
    # distribution or function URL. Links there are foreign-hosted, never the brand's.
    customer_space: tuple[str, ...] = ()
    # Host patterns inside customer_space that the brand itself operates (its API endpoints).
    service_hosts: tuple[str, ...] = ()
    # Labels lookalike domains imitate: the registrable label of the brand ("amazon").
    stems: tuple[str, ...]
    phones: tuple[str, ...]
    # Lure vocabulary sets of the core (lures.py) that this brand's lures use.
    lure_sets: tuple[str, ...]
    # Brand-specific lure phrases, by lure kind.
    extra_lures: dict[str, tuple[str, ...]]
    path: str = ""

    def owns(self, host: str | None) -> bool:
        """Is this host (or domain) one of the brand's own domains or below one? Customer space
        under a brand name (a function URL under on.aws) is not the brand's own."""
        return _below(host, _cached_set(self.domains)) and not (self.customer_space and self.customer_hosted(host))

    def sends_from(self, domain: str | None) -> bool:
        """Is this a domain the brand sends its own service mail from (not one of its own domains)?"""
        return _below(domain, _cached_set(self.sending_domains))

    def customer_hosted(self, host: str | None) -> bool:
        """Is this host in brand space that anyone can fill (and not a brand service host)?"""
        h = (host or "").lower().rstrip(".")
        return bool(h) and _globs(self.customer_space).match(h) is not None \
            and _globs(self.service_hosts).match(h) is None

    def trusts_link(self, host: str | None) -> bool:
        """Is this host the brand's own, its sending/linking infrastructure or a brand service
        host? Customer space is never trusted, even under a brand-owned name."""
        h = (host or "").lower().rstrip(".")
        if self.customer_hosted(h):
            return False
        return _below(h, _cached_set(self.domains)) or _below(h, _cached_set(self.infrastructure_domains)) \
            or _below(h, _cached_set(self.sending_domains)) or _globs(self.service_hosts).match(h) is not None

    def family_registrations(self) -> frozenset[str]:
        """Registered names the brand holds beyond its own domains: its infrastructure, sending
        domains and the apexes of its customer space. A lookalike test never fires on them
        (amazonaws.com contains "amazon" and is Amazon's)."""
        apexes = {p.lstrip("*.").split("/", 1)[0] for p in self.customer_space + self.service_hosts}
        return frozenset(x.lower() for x in (*self.infrastructure_domains, *self.sending_domains, *apexes)
                         if "*" not in x)


@lru_cache(maxsize=64)
def _globs(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a tuple of host globs (fnmatch syntax); matches nothing when empty."""
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns))


def _below(host: str | None, domains: frozenset[str]) -> bool:
    # Suffix walk rather than PSL lookup: immune to PSL gaps such as com.be.
    h = (host or "").lower().rstrip(".")
    while h:
        if h in domains:
            return True
        _, _, h = h.partition(".")
    return False


_SETS: dict[tuple[str, ...], frozenset[str]] = {}


def _cached_set(items: tuple[str, ...]) -> frozenset[str]:
    found = _SETS.get(items)
    if found is None:
        found = _SETS[items] = frozenset(x.lower() for x in items)
    return found


def _visible(phrases: list[str], path: Path, key: str) -> None:
    """Names and phrases are matched on normalised text: one that normalises to nothing (only
    spaces or invisible characters) would match every message."""
    for phrase in phrases:
        if not clean(phrase).strip():
            shown = phrase.encode("unicode_escape").decode("ascii")
            raise ProfileError(path, key, f'"{shown}" is empty once normalised (spaces and invisible characters '
                                         "only): it would match every message")


def load_brand(path: Path, *, config_file: Path | str, key: str) -> BrandProfile:
    """Read a brand profile; errors name the profile file and the key."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ProfileError(config_file, key, f"cannot read brand profile {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path, "", f"not valid TOML: {exc}") from None

    allowed = {"id", "display", "names", "products", "domains", "infrastructure_domains", "sending_domains",
               "customer_space", "service_hosts", "stems", "phones", "lure_sets", "extra_lures"}
    for k in data:
        if k not in allowed:
            raise ProfileError(path, k, "unknown key")

    def strings(name: str, required: bool = False, matched: bool = False) -> tuple[str, ...]:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            raise ProfileError(path, name, "must be a list of non-empty strings")
        if required and not value:
            raise ProfileError(path, name, "must not be empty")
        if matched:
            _visible(value, path, name)
        return tuple(value)

    for name in ("id", "display"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise ProfileError(path, name, "must be a non-empty string")
    extra = data.get("extra_lures", {})
    if not isinstance(extra, dict):
        raise ProfileError(path, "extra_lures", "must be a table of lists")
    extra_lures: dict[str, tuple[str, ...]] = {}
    for kind, phrases in extra.items():
        if not isinstance(phrases, list) or not all(isinstance(x, str) and x for x in phrases):
            raise ProfileError(path, f"extra_lures.{kind}", "must be a list of non-empty strings")
        _visible(phrases, path, f"extra_lures.{kind}")
        extra_lures[kind] = tuple(phrases)
    return BrandProfile(
        id=data["id"],
        display=data["display"],
        names=tuple(x.lower() for x in strings("names", True, matched=True)),
        products=tuple(x.lower() for x in strings("products", matched=True)),
        domains=tuple(x.lower() for x in strings("domains", True)),
        infrastructure_domains=tuple(x.lower() for x in strings("infrastructure_domains")),
        sending_domains=tuple(x.lower() for x in strings("sending_domains")),
        customer_space=tuple(x.lower() for x in strings("customer_space")),
        service_hosts=tuple(x.lower() for x in strings("service_hosts")),
        stems=tuple(x.lower() for x in strings("stems", True, matched=True)),
        phones=strings("phones"),
        lure_sets=strings("lure_sets"),
        extra_lures=extra_lures,
        path=str(path),
    )
