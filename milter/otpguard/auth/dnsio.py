"""The one DNS layer of sender authentication: dnspython, a bounded TTL cache, a per-message budget."""
from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from .settings import AuthConfig

log = logging.getLogger(__name__)

OnQuery = Callable[[float, str], None]
Clock = Callable[[], float]

# One cached answer: TXT as joined bytes, A/AAAA/PTR as text, MX as (preference, exchange).
Value = bytes | str | tuple[int, str]

# RFC 2308 section 5: negative answers are cached for min(SOA TTL, SOA MINIMUM); answers that
# carry no SOA (dnsmasq's local=/#/ NXDOMAIN) get this many seconds instead.
DEFAULT_NEGATIVE_TTL = 60.0
# RFC 2308 section 5 also advises against caching negative answers for longer than hours; a cap
# on positive answers keeps a rotated DKIM key from being trusted a day after it changed.
DEFAULT_MAX_TTL = 3600.0
DEFAULT_MAX_NEGATIVE_TTL = 900.0

_TYPES = {
    "TXT": dns.rdatatype.TXT,
    "A": dns.rdatatype.A,
    "AAAA": dns.rdatatype.AAAA,
    "MX": dns.rdatatype.MX,
    "PTR": dns.rdatatype.PTR,
}


class DnsTempError(Exception):
    """A lookup that may work later: timeout, SERVFAIL, no usable server, or the budget is spent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsStats:
    """Counters since the client was made: network queries, cache hits, entries held now."""

    queries: int
    cache_hits: int
    cache_entries: int


@dataclass(frozen=True, slots=True)
class _Entry:
    expires: float
    values: tuple[Value, ...]
    nxdomain: bool = False  # RFC 8020: the name does not exist, for any type


class Budget:
    """A deadline for one message's lookups; while entered, it bounds every query on this thread."""

    __slots__ = ("_client", "_seconds", "deadline")

    def __init__(self, client: DnsClient, seconds: float) -> None:
        self._client = client
        self._seconds = max(0.0, seconds)
        self.deadline = time.monotonic() + self._seconds

    def remaining(self) -> float:
        """Seconds left before queries under this budget fail fast (never below zero)."""
        return max(0.0, self.deadline - time.monotonic())

    @property
    def spent(self) -> bool:
        return self.remaining() <= 0.0

    def __enter__(self) -> Budget:
        # The clock starts when the budget is entered, not when it was made.
        self.deadline = time.monotonic() + self._seconds
        self._client._push_budget(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client._pop_budget(self)


class DnsClient:
    """Caching stub resolver for SPF, DKIM, ARC and DMARC lookups; safe to share between threads.

    on_query(seconds, outcome) is called after every query sent (never for cache hits), with
    outcome one of ok, nodata, nxdomain, timeout, servfail, error.
    """

    def __init__(self, *, nameservers: Sequence[str] = (), port: int = 53, query_timeout: float = 2.0,
                 cache_size: int = 10_000, negative_ttl: float = DEFAULT_NEGATIVE_TTL,
                 max_ttl: float = DEFAULT_MAX_TTL, max_negative_ttl: float = DEFAULT_MAX_NEGATIVE_TTL,
                 clock: Clock = time.monotonic, on_query: OnQuery | None = None) -> None:
        self.query_timeout = query_timeout
        self.cache_size = max(0, cache_size)
        self.negative_ttl = negative_ttl
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.on_query = on_query
        self._clock = clock
        self._cache: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._queries = 0
        self._hits = 0
        for server in nameservers:
            try:
                ipaddress.ip_address(server)
            except ValueError:
                raise ValueError(f"DNS nameserver {server!r} is not an IP address") from None
        self._resolver: dns.resolver.Resolver | None
        self._no_resolver_reason = ""
        try:
            resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            # No usable /etc/resolv.conf: every lookup becomes a temperror, never a crash.
            self._resolver = None
            self._no_resolver_reason = f"no resolver configuration: {exc}"
        else:
            if nameservers:
                resolver.nameservers = list(nameservers)
            resolver.port = port
            resolver.timeout = query_timeout
            resolver.lifetime = query_timeout
            resolver.cache = None  # ours respects the injected clock and the size bound
            self._resolver = resolver

    @classmethod
    def from_config(cls, cfg: AuthConfig, *, on_query: OnQuery | None = None,
                    clock: Clock = time.monotonic) -> DnsClient:
        """A client with the nameservers, port, timeout and cache size of the [auth] section."""
        return cls(nameservers=cfg.nameservers, port=cfg.port, query_timeout=cfg.query_timeout,
                   cache_size=cfg.cache_size, clock=clock, on_query=on_query)

    # -- budget -------------------------------------------------------------------------------

    def budget(self, seconds: float) -> Budget:
        """A per-message budget; use as `with client.budget(5.0):` around the message's lookups."""
        return Budget(self, seconds)

    def _stack(self) -> list[Budget]:
        stack: list[Budget] | None = getattr(self._local, "budgets", None)
        if stack is None:
            stack = self._local.budgets = []
        return stack

    def _push_budget(self, budget: Budget) -> None:
        self._stack().append(budget)

    def _pop_budget(self, budget: Budget) -> None:
        stack = self._stack()
        if budget in stack:
            stack.remove(budget)

    def remaining(self) -> float | None:
        """Seconds left in the tightest budget entered on this thread, or None without a budget."""
        stack = self._stack()
        if not stack:
            return None
        return min(b.remaining() for b in stack)

    # -- typed lookups ------------------------------------------------------------------------

    def txt(self, name: str) -> list[str]:
        """TXT records of a name, each with its character-strings joined (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
        return [v.decode("utf-8", "replace") for v in self.txt_bytes(name)]

    def txt_bytes(self, name: str) -> list[bytes]:
        """TXT records as joined bytes, for libraries that want octets (dkimpy, pyspf)."""
        return [v for v in self._lookup(name, "TXT") if isinstance(v, bytes)]

    def a(self, name: str) -> list[str]:
        return [v for v in self._lookup(name, "A") if isinstance(v, str)]

    def aaaa(self, name: str) -> list[str]:
        return [v for v in self._lookup(name, "AAAA") if isinstance(v, str)]

    def mx(self, name: str) -> list[tuple[int, str]]:
        """MX records as (preference, exchange) with the exchange lowercased, without the final dot."""
        return [v for v in self._lookup(name, "MX") if isinstance(v, tuple)]

    def ptr(self, name: str) -> list[str]:
        """PTR targets of a reverse name such as 1.2.0.192.in-addr.arpa."""
        return [v for v in self._lookup(name, "PTR") if isinstance(v, str)]

    def exists(self, name: str) -> bool:
        """Whether a name exists: False only for NXDOMAIN (RFC 8020: then nothing exists at or
        below it). An empty non-terminal such as _domainkey.example.com exists. Raises
        DnsTempError when the resolver cannot say."""
        return not self._query(name, "TXT").nxdomain

    # -- cache --------------------------------------------------------------------------------

    def stats(self) -> DnsStats:
        with self._lock:
            return DnsStats(queries=self._queries, cache_hits=self._hits, cache_entries=len(self._cache))

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _cached(self, key: tuple[str, int]) -> _Entry | None:
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry.expires <= now:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            self._hits += 1
            return entry

    def _store(self, key: tuple[str, int], values: tuple[Value, ...], ttl: float, nxdomain: bool = False) -> None:
        if self.cache_size <= 0 or ttl <= 0:
            return  # TTL 0 means "do not cache" (RFC 1035 section 3.2.1)
        expires = self._clock() + ttl
        with self._lock:
            self._cache[key] = _Entry(expires, values, nxdomain)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)

    # -- the query ----------------------------------------------------------------------------

    def _lookup(self, name: str, qtype: str) -> tuple[Value, ...]:
        return self._query(name, qtype).values

    def _query(self, name: str, qtype: str) -> _Entry:
        norm = name.strip().rstrip(".").lower()
        if not norm:
            return _NO_NAME
        try:
            qname = dns.name.from_text(norm)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            # A name that cannot exist on the wire (empty label, label > 63 octets) has no records.
            return _NO_NAME
        rdtype = _TYPES[qtype]
        key = (norm, int(rdtype))
        cached = self._cached(key)
        if cached is not None:
            return cached

        if self._resolver is None:
            raise DnsTempError(f"{norm}/{qtype}: {self._no_resolver_reason}")
        remaining = self.remaining()
        if remaining is not None and remaining <= 0.0:
            raise DnsTempError(f"{norm}/{qtype}: DNS budget for this message is spent")
        lifetime = self.query_timeout if remaining is None else min(self.query_timeout, remaining)

        started = time.monotonic()
        try:
            answer = self._resolver.resolve(qname, rdtype, lifetime=lifetime, search=False,
                                            raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            self._count(started, "nxdomain")
            self._store(key, (), self._negative_ttl(_nx_response(exc, qname)), nxdomain=True)
            return _NX
        except dns.resolver.YXDOMAIN:
            self._count(started, "nxdomain")
            return _NX
        except dns.exception.Timeout as exc:
            self._count(started, "timeout")
            raise DnsTempError(f"{norm}/{qtype}: timeout after {lifetime:.2f}s") from exc
        except dns.resolver.NoNameservers as exc:
            self._count(started, "servfail")
            raise DnsTempError(f"{norm}/{qtype}: no server answered usefully") from exc
        except dns.exception.DNSException as exc:
            self._count(started, "error")
            raise DnsTempError(f"{norm}/{qtype}: {exc.__class__.__name__}: {exc}") from exc

        rrset = answer.rrset
        if rrset is None:
            self._count(started, "nodata")
            self._store(key, (), self._negative_ttl(answer.response))
            return _NODATA
        self._count(started, "ok")
        values = tuple(v for v in (_value(rd) for rd in rrset) if v is not None)
        self._store(key, values, min(float(answer.chaining_result.minimum_ttl), self.max_ttl))
        return _Entry(0.0, values)

    def _count(self, started: float, outcome: str) -> None:
        seconds = time.monotonic() - started
        with self._lock:
            self._queries += 1
        if self.on_query is not None:
            try:
                self.on_query(seconds, outcome)
            except Exception:  # a metrics hook must never break a lookup
                log.exception("dns on_query callback failed")

    def _negative_ttl(self, response: dns.message.Message | None) -> float:
        ttl = self.negative_ttl
        if response is not None:
            for rrset in response.authority:
                if rrset.rdtype == dns.rdatatype.SOA:
                    for soa in rrset:
                        ttl = float(min(rrset.ttl, soa.minimum))  # RFC 2308 section 5
                        break
                    break
        return min(ttl, self.max_negative_ttl)


# Answers that are not cached entries: what _query returns without a cache.
_NX = _Entry(0.0, (), True)
_NODATA = _Entry(0.0, ())
_NO_NAME = _Entry(0.0, (), True)  # a name that cannot exist on the wire


def _nx_response(exc: dns.resolver.NXDOMAIN, qname: dns.name.Name) -> dns.message.Message | None:
    responses = exc.kwargs.get("responses") or {}
    response = responses.get(qname)
    return response if isinstance(response, dns.message.Message) else None


def _value(rd: dns.rdata.Rdata) -> Value | None:
    if isinstance(rd, dns.rdtypes.ANY.TXT.TXT):
        # RFC 7208 3.3 and RFC 6376 3.6.2.2: the strings of one record are concatenated as-is.
        return b"".join(rd.strings)
    if isinstance(rd, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
        return str(rd.address)
    if isinstance(rd, dns.rdtypes.ANY.MX.MX):
        return (int(rd.preference), rd.exchange.to_text(omit_final_dot=True).lower())
    if isinstance(rd, dns.rdtypes.ANY.PTR.PTR):
        return rd.target.to_text(omit_final_dot=True).lower()
    return None  # a type we did not ask for (dnspython returns only the asked type)
