"""The DNS layer against a real dnsmasq: record types, TTL cache, negative cache, budget, failures."""
from __future__ import annotations

import threading

import pytest

from otpguard.auth.settings import AuthConfig
from otpguard.auth.dnsio import DnsClient, DnsTempError
from support.dnsserver import (  # noqa: F401  (fixtures are used by name)
    BlackHoleServer,
    DnsmasqFactory,
    DnsmasqServer,
    Zones,
    alarm,
    black_hole,
    dnsmasq_factory,
    dnsmasq_module_factory,
    render_config,
    split_txt,
)

LONG = "v=DKIM1; k=rsa; p=" + "A" * 600  # three character-strings on the wire

ZONES: Zones = {
    "example.test": {"TXT": ["v=spf1 -all", "other record"], "A": ["192.0.2.1", "192.0.2.2"],
                     "AAAA": ["2001:db8::1"], "MX": [(20, "mx2.example.test"), (10, "MX1.example.test")]},
    "long.example.test": {"TXT": [LONG]},
    "alias.example.test": {"CNAME": ["example.test"]},
    "7.2.0.192.in-addr.arpa": {"PTR": ["host.example.test"]},
    "quote.example.test": {"TXT": ['say "hi", then \\ leave']},
}


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server(dnsmasq_module_factory: DnsmasqFactory) -> DnsmasqServer:
    return dnsmasq_module_factory(ZONES, ttl=60)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, seconds: float, outcome: str) -> None:
        self.calls.append((seconds, outcome))

    @property
    def outcomes(self) -> list[str]:
        return [o for _, o in self.calls]


def make(server: DnsmasqServer | BlackHoleServer, **kw: object) -> tuple[DnsClient, Recorder]:
    rec = Recorder()
    client = DnsClient(nameservers=("127.0.0.1",), port=server.port, on_query=rec, **kw)  # type: ignore[arg-type]
    return client, rec


# -- pure helpers ---------------------------------------------------------------------------

def test_split_txt_makes_strings_of_at_most_255_octets() -> None:
    parts = split_txt(LONG)
    assert [len(p) for p in parts] == [255, 255, len(LONG) - 510]
    assert "".join(parts) == LONG
    assert split_txt("") == [""]


def test_render_config_serves_only_the_zones() -> None:
    text = render_config(ZONES, port=5300, ttl=30)
    assert "local=/#/" in text and "no-resolv" in text and "port=5300" in text
    assert 'txt-record=quote.example.test,"say \\"hi\\", then \\\\ leave"' in text
    assert "mx-host=example.test,MX1.example.test,10" in text


def test_from_config_takes_the_auth_section() -> None:
    client = DnsClient.from_config(AuthConfig(nameservers=("127.0.0.1",), port=5353, query_timeout=0.5,
                                              cache_size=7))
    assert (client.query_timeout, client.cache_size) == (0.5, 7)


def test_nameservers_must_be_addresses() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        DnsClient(nameservers=("dns.example.net",))


def test_names_that_cannot_exist_are_empty_without_a_query() -> None:
    rec = Recorder()
    client = DnsClient(nameservers=("127.0.0.1",), port=9, on_query=rec)
    assert client.txt("") == []
    assert client.txt("a..b.example") == []
    assert client.txt("x" * 64 + ".example") == []
    assert rec.calls == []


# -- records --------------------------------------------------------------------------------



@pytest.mark.integration
def test_record_types(server: DnsmasqServer) -> None:
    client, _ = make(server)
    assert sorted(client.txt("example.test")) == ["other record", "v=spf1 -all"]
    assert sorted(client.a("Example.Test.")) == ["192.0.2.1", "192.0.2.2"]
    assert client.aaaa("example.test") == ["2001:db8::1"]
    assert sorted(client.mx("example.test")) == [(10, "mx1.example.test"), (20, "mx2.example.test")]
    assert client.ptr("7.2.0.192.in-addr.arpa") == ["host.example.test"]
    assert client.txt("quote.example.test") == ['say "hi", then \\ leave']


@pytest.mark.integration
def test_long_txt_strings_are_joined(server: DnsmasqServer) -> None:
    client, _ = make(server)
    assert client.txt("long.example.test") == [LONG]
    assert client.txt_bytes("long.example.test") == [LONG.encode()]


@pytest.mark.integration
def test_cname_is_followed(server: DnsmasqServer) -> None:
    client, _ = make(server)
    assert sorted(client.a("alias.example.test")) == ["192.0.2.1", "192.0.2.2"]


@pytest.mark.integration
def test_nxdomain_and_nodata_are_empty(server: DnsmasqServer) -> None:
    client, rec = make(server)
    assert client.txt("missing.example.test") == []
    assert client.mx("long.example.test") == []
    assert rec.outcomes == ["nxdomain", "nodata"]


@pytest.mark.integration
def test_exists_is_false_only_for_nxdomain(server: DnsmasqServer) -> None:
    """RFC 8020: NXDOMAIN means nothing at or below the name; NODATA and an empty non-terminal
    (7.2.0.192.in-addr.arpa has only PTR; 2.0.192.in-addr.arpa has nothing but a child) exist."""
    client, rec = make(server)
    assert client.exists("example.test")
    assert client.exists("7.2.0.192.in-addr.arpa")  # NODATA for TXT
    assert client.exists("2.0.192.in-addr.arpa")  # empty non-terminal
    assert not client.exists("missing.example.test")
    assert not client.exists("")  # no name at all
    assert rec.outcomes == ["ok", "nodata", "nodata", "nxdomain"]
    # The answers are cached with the rest: a TXT lookup after exists() asks nothing new.
    assert client.txt("missing.example.test") == [] and not client.exists("missing.example.test")
    assert len(rec.outcomes) == 4


@pytest.mark.integration
def test_exists_raises_temperror_when_the_resolver_cannot_say(black_hole: BlackHoleServer, alarm: None) -> None:
    client = DnsClient(nameservers=("127.0.0.1",), port=black_hole.port, query_timeout=0.2)
    with pytest.raises(DnsTempError):
        client.exists("example.test")


# -- cache ----------------------------------------------------------------------------------

@pytest.mark.integration
def test_second_lookup_is_served_from_cache(server: DnsmasqServer) -> None:
    client, rec = make(server)
    first = client.txt("example.test")
    assert client.txt("EXAMPLE.test.") == first  # case and final dot do not matter
    assert rec.outcomes == ["ok"]
    assert client.stats().cache_hits == 1
    client.a("example.test")  # another type is another question
    assert rec.outcomes == ["ok", "ok"]


@pytest.mark.integration
def test_negative_answers_are_cached(server: DnsmasqServer) -> None:
    client, rec = make(server)
    for _ in range(3):
        assert client.txt("nothing-here.example.test") == []
        assert client.a("long.example.test") == []
    assert rec.outcomes == ["nxdomain", "nodata"]


@pytest.mark.integration
def test_ttl_expiry_follows_the_clock(server: DnsmasqServer) -> None:
    clock = FakeClock()
    client, rec = make(server, clock=clock)
    client.txt("example.test")
    clock.now += 59.0  # dnsmasq serves these with TTL 60
    client.txt("example.test")
    assert rec.outcomes == ["ok"]
    clock.now += 1.5
    client.txt("example.test")
    assert rec.outcomes == ["ok", "ok"]


@pytest.mark.integration
def test_negative_ttl_expiry_and_caps(server: DnsmasqServer) -> None:
    clock = FakeClock()
    client, rec = make(server, clock=clock, negative_ttl=30.0, max_ttl=10.0)
    client.txt("gone.example.test")
    client.txt("example.test")
    clock.now += 11.0  # past max_ttl for the positive answer, inside the negative TTL
    client.txt("gone.example.test")
    client.txt("example.test")
    assert rec.outcomes == ["nxdomain", "ok", "ok"]
    clock.now += 20.0
    client.txt("gone.example.test")
    assert rec.outcomes == ["nxdomain", "ok", "ok", "nxdomain"]


@pytest.mark.integration
def test_cache_is_a_bounded_lru(server: DnsmasqServer) -> None:
    client, rec = make(server, cache_size=2)
    client.txt("example.test")
    client.a("example.test")
    client.txt("example.test")  # refresh: a/example.test is now the oldest
    client.aaaa("example.test")  # evicts a/example.test
    assert client.stats().cache_entries == 2
    client.txt("example.test")
    assert len(rec.calls) == 3
    client.a("example.test")
    assert len(rec.calls) == 4


@pytest.mark.integration
def test_cache_size_zero_disables_the_cache(server: DnsmasqServer) -> None:
    client, rec = make(server, cache_size=0)
    client.txt("example.test")
    client.txt("example.test")
    assert rec.outcomes == ["ok", "ok"]


@pytest.mark.integration
def test_a_failing_metrics_hook_does_not_break_lookups(server: DnsmasqServer) -> None:
    def broken(seconds: float, outcome: str) -> None:
        raise RuntimeError("metrics are down")

    client = DnsClient(nameservers=("127.0.0.1",), port=server.port, on_query=broken)
    assert client.a("example.test")


# -- failures and the budget ----------------------------------------------------------------

@pytest.mark.integration
def test_black_hole_raises_temperror(black_hole: BlackHoleServer, alarm: None) -> None:
    client, rec = make(black_hole, query_timeout=0.3)
    with pytest.raises(DnsTempError):
        client.txt("example.test")
    assert rec.outcomes == ["timeout"]
    assert black_hole.received >= 1


@pytest.mark.integration
def test_spent_budget_fails_fast_without_sending(black_hole: BlackHoleServer, alarm: None) -> None:
    client, rec = make(black_hole, query_timeout=10.0)
    with client.budget(0.5) as budget:
        with pytest.raises(DnsTempError):
            client.txt("one.example.test")  # runs for the budget, not the 10 s timeout
        assert budget.spent
        sent = black_hole.received
        for name in ("two.example.test", "three.example.test"):
            with pytest.raises(DnsTempError, match="budget"):
                client.txt(name)
        assert black_hole.received == sent
    assert rec.outcomes == ["timeout"]
    # The one query was cut to the 0.5 s budget, not the 10 s timeout (tolerance: scheduling).
    assert rec.calls[0][0] < 0.5 + 0.4, rec.calls


@pytest.mark.integration
def test_cache_hits_are_served_when_the_budget_is_spent(server: DnsmasqServer) -> None:
    client, _ = make(server)
    client.txt("example.test")
    with client.budget(0.0):
        assert client.txt("example.test")
        with pytest.raises(DnsTempError):
            client.txt("long.example.test")


@pytest.mark.integration
def test_budgets_nest_and_belong_to_their_thread(server: DnsmasqServer) -> None:
    client, _ = make(server)
    assert client.remaining() is None
    with client.budget(10.0):
        with client.budget(0.0):
            remaining = client.remaining()
            assert remaining is not None and remaining == 0.0
            results: list[list[str]] = []
            other = threading.Thread(target=lambda: results.append(client.txt("example.test")))
            other.start()
            other.join(5)
            assert results and results[0]  # the other thread has no budget of ours
        remaining = client.remaining()
        assert remaining is not None and remaining > 5.0
    assert client.remaining() is None


@pytest.mark.integration
def test_server_down_is_temperror_and_restart_recovers(dnsmasq_factory: DnsmasqFactory, alarm: None) -> None:
    server = dnsmasq_factory({"up.example.test": {"TXT": ["v1"]}})
    client, rec = make(server, query_timeout=0.3)
    assert client.txt("up.example.test") == ["v1"]
    server.stop()
    with pytest.raises(DnsTempError):
        client.txt("other.example.test")
    server.restart({"up.example.test": {"TXT": ["v2"]}})
    client.clear_cache()
    assert client.txt("up.example.test") == ["v2"]
    assert rec.outcomes == ["ok", "timeout", "ok"]
