"""Registered domains by the bundled Public Suffix List, lookalikes, normalisation."""
from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otpguard.core.domains import is_ip, lookalike, osa_distance, registered_domain
from otpguard.core.normalize import clean, count_invisible, skeleton


def test_registered_domain_uses_the_public_suffix_list():
    assert registered_domain("www.amazon.co.jp") == "amazon.co.jp"
    assert registered_domain("a.b.amazon.co.uk") == "amazon.co.uk"
    assert registered_domain("198.51.100.7") == ""


def test_brand_top_level_domains_are_owned(config):
    assert config.brands[0].owns("signin.aws") and config.brands[0].owns("www.amazon")
    assert not config.brands[0].owns("aws.example")


def test_amazon_com_be_is_owned_despite_its_public_suffix(config):
    brand = config.brands[0]
    assert brand.owns("www.amazon.com.be")
    assert lookalike("www.amazon.com.be", brand) is None


@pytest.mark.parametrize("host,how", [
    ("amazon-security-jp.com", "brand in name"),
    ("amazon.co.jp.xyz-verify.top", "brand in subdomain"),
    ("amaz0n-verify.xyz", "brand in name"),
    ("arnazon.com", "homoglyph"),
    ("annazon.co.jp", "homoglyph"),
    ("amazn-support.net", "typo"),
    ("xn--amazn-mye.com", "punycode"),
    ("jp-amzn-support.xyz", "brand in name"),
])
def test_lookalike_domains_are_recognised(config, host, how):
    found = lookalike(host, config.brands[0])
    assert found is not None and found.how == how and found.stem in ("amazon", "amzn")


@pytest.mark.parametrize("host", ["amazon.com", "smile.amazon.de", "amazing.com", "example.org", "mazda.com"])
def test_real_and_unrelated_domains_are_not_lookalikes(config, host):
    assert lookalike(host, config.brands[0]) is None


def test_ip_literals_in_all_browser_forms():
    assert is_ip("198.51.100.7") and is_ip("2001:db8::1") and is_ip("3325256711") and is_ip("0xc6.0x33.100.7")
    assert not is_ip("123.example") and not is_ip("amazon.com")


def _is_ip_by_trying(host: str) -> bool:
    """An IP literal, or a host the WHATWG URL parser (as browsers) reads as an IPv4 address,
    asked without any shortcut."""
    from ada_url import URL, HostType

    h = host.strip("[]")
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        pass
    if any(c in h for c in ":/\\@"):
        return False
    try:
        return URL(f"http://{h}/").host_type == HostType.IPV4
    except ValueError:
        return False


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=st.sampled_from("0129afx.:[]%e \u0661"), max_size=16))
@example("\u0661.1")  # an Arabic-Indic digit: not a number to the URL parser, so no address
@example("[1.2.3.4]")
def test_ip_literal_test_agrees_with_trying_to_parse_it(host):
    assert is_ip(host) == _is_ip_by_trying(host)


def test_osa_distance_counts_transpositions_once():
    assert osa_distance("aamzon", "amazon") == 1
    assert osa_distance("amazon", "amazon") == 0


def test_clean_removes_invisibles_and_stray_marks():
    assert clean("A\u200bma\u200dzon") == "amazon"
    assert clean("A\u073fm\u073fa\u073fz\u073fon") == "amazon"  # Syriac marks over Latin letters
    assert clean("ＡＭＡＺＯＮ") == "amazon"  # NFKC folds fullwidth
    assert count_invisible("P\u200er\u200ei\u200em\u200ee") == 4


def test_skeleton_maps_greek_and_cyrillic_lookalikes():
    assert skeleton(clean("Αmazοn")) == "amazon"   # Greek Alpha and omicron
    assert skeleton(clean("Аmаzоn")) == "amazon"   # Cyrillic a and o


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="amzonxy", max_size=9), st.text(alphabet="amzonxy", max_size=9), st.integers(0, 3))
def test_osa_distance_letter_bound_changes_no_answer(a, b, limit):
    """The letters-present bound only skips the table when the table would say "over the limit"."""
    def table(a: str, b: str) -> int:  # the plain OSA recurrence, uncapped
        d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(len(a) + 1):
            d[i][0] = i
        for j in range(len(b) + 1):
            d[0][j] = j
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
                if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
        return d[-1][-1]

    assert min(osa_distance(a, b, limit), limit + 1) == min(table(a, b), limit + 1)
