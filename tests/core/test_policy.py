"""Allow and deny lists: entries keyed on what authentication proved, the client, the recipients."""
from __future__ import annotations

from pathlib import Path

import pytest

from otpguard.core.errors import ProfileError
from otpguard.core.model import AuthSummary, DkimResult, Envelope
from otpguard.core.policy import PolicyLists, load_list, match, parse_list, recipient_domain


def lists(allow: str = "", deny: str = "") -> PolicyLists:
    return PolicyLists(allow=parse_list(allow, which="allow", file="allow.list"),
                       deny=parse_list(deny, which="deny", file="deny.list"))


AUTH = AuthSummary(source="local", spf="pass", spf_domain="bounces.partner.example",
                   dkim=(DkimResult(domain="mail.partner.example", selector="s", result="pass"),
                         DkimResult(domain="esp.example", selector="s", result="fail")),
                   dmarc="pass", from_domain="partner.example", dmarc_aligned="dkim:mail.partner.example")
ENV = Envelope(client_ip="192.0.2.7", rcpt_to=("alice@example.org",))


def test_list_files_take_one_entry_per_line_with_comments() -> None:
    entries = parse_list("# partners\n\ndkim:Partner.Example.  # their ESP signs too\nip:192.0.2.0/24\n"
                         "rcpt:Abuse@Example.ORG\nip:2001:db8::1\n", which="allow", file="a")
    assert [(e.kind, e.value, e.line) for e in entries] == [
        ("dkim", "partner.example", 3), ("ip", "192.0.2.0/24", 4), ("rcpt", "abuse@example.org", 5),
        ("ip", "2001:db8::1/128", 6)]


@pytest.mark.parametrize("line, problem", [
    ("from:partner.example", "refused: an allow entry on the From domain would let every spoof"),
    ("partner.example", "expected kind:value"),
    ("dkmi:partner.example", "expected kind:value"),
    ("ip:192.0.2.300", "not an IP address"),
    ("dkim:", "not a domain"),
    ("dkim:bad domain.example", "not a domain"),
    ("rcpt:nobody", "not an address"),
])
def test_bad_entries_name_the_file_and_line(line: str, problem: str) -> None:
    with pytest.raises(ProfileError) as err:
        parse_list(f"dkim:ok.example\n{line}\n", which="allow", file="/etc/otpguard/allow.list")
    assert err.value.file == "/etc/otpguard/allow.list" and err.value.key == "line 2"
    assert problem in err.value.problem


def test_the_refusal_says_what_to_write_instead() -> None:
    with pytest.raises(ProfileError) as err:
        parse_list("from:partner.example", which="allow", file="a")
    assert "dmarc:partner.example" in err.value.problem and "dkim:partner.example" in err.value.problem


def test_deny_lists_may_name_the_unauthenticated_from_domain() -> None:
    (entry,) = parse_list("from:spoofer.example", which="deny", file="d")
    hits, matched = match(PolicyLists(deny=(entry,)), auth=None, envelope=ENV, from_domain="x.spoofer.example")
    assert [h.symbol for h in hits] == ["POLICY_DENY"] and matched == ("deny:from",)


def test_authenticated_identities_match_only_what_passed() -> None:
    for entry in ("dkim:partner.example", "dmarc:partner.example", "spf:partner.example"):
        hits, matched = match(lists(allow=entry), auth=AUTH, envelope=ENV, from_domain="partner.example")
        assert [h.symbol for h in hits] == ["POLICY_ALLOW"], entry
        assert hits[0].reason == f"allow list line 1: {entry}" and matched == (f"allow:{entry.split(':')[0]}",)
    # A failed signature, another domain, or no authentication at all match nothing.
    for entry in ("dkim:esp.example", "dkim:other.example", "dmarc:mail.partner.example", "spf:partner.test"):
        assert match(lists(allow=entry), auth=AUTH, envelope=ENV, from_domain="partner.example")[0] == [], entry
    assert match(lists(allow="dkim:partner.example"), auth=None, envelope=ENV, from_domain="partner.example")[0] == []
    # "partner.example" does not cover "evilpartner.example".
    evil = AuthSummary(source="local", dkim=(DkimResult(domain="evilpartner.example", selector="s", result="pass"),))
    assert match(lists(allow="dkim:partner.example"), auth=evil, envelope=ENV, from_domain=None)[0] == []


def test_client_address_matches_by_network() -> None:
    assert match(lists(deny="ip:192.0.2.0/25"), auth=None, envelope=ENV, from_domain=None)[1] == ("deny:ip",)
    assert match(lists(deny="ip:192.0.2.128/25"), auth=None, envelope=ENV, from_domain=None)[1] == ()
    v6 = Envelope(client_ip="IPv6:2001:db8::5")
    assert match(lists(deny="ip:2001:db8::/64"), auth=None, envelope=v6, from_domain=None)[1] == ("deny:ip",)
    assert match(lists(deny="ip:2001:db8::/64"), auth=None, envelope=Envelope(), from_domain=None)[1] == ()


def test_recipient_allow_needs_every_recipient_and_never_names_one() -> None:
    allow = lists(allow="rcpt:abuse@example.org\nrcpt_domain:reports.example.org")
    one = Envelope(rcpt_to=("<Abuse@example.org>",))
    hits, _ = match(allow, auth=None, envelope=one, from_domain=None)
    assert hits and hits[0].reason == "allow list line 1: rcpt" and "abuse" not in hits[0].reason
    both = Envelope(rcpt_to=("abuse@example.org", "x@reports.example.org"))
    assert match(allow, auth=None, envelope=both, from_domain=None)[1] == ("allow:rcpt",)
    mixed = Envelope(rcpt_to=("abuse@example.org", "alice@example.org"))
    assert match(allow, auth=None, envelope=mixed, from_domain=None)[0] == []
    # A deny entry applies when it names any recipient (a spam trap among real addresses).
    deny = lists(deny="rcpt:trap@example.org")
    assert match(deny, auth=None, envelope=Envelope(rcpt_to=("alice@example.org", "trap@example.org")),
                 from_domain=None)[1] == ("deny:rcpt",)


def test_one_hit_per_list_and_both_lists_can_match() -> None:
    both = lists(allow="ip:192.0.2.7\ndkim:partner.example", deny="dmarc:partner.example")
    hits, matched = match(both, auth=AUTH, envelope=ENV, from_domain="partner.example")
    assert [h.symbol for h in hits] == ["POLICY_ALLOW", "POLICY_DENY"]
    assert matched == ("allow:ip", "deny:dmarc")


def test_recipient_domain_is_the_one_domain_all_recipients_share() -> None:
    domains = {"strict.example", "trial.example"}
    assert recipient_domain(["a@strict.example", "<B@Strict.Example>"], domains) == "strict.example"
    assert recipient_domain(["a@strict.example", "b@trial.example"], domains) is None
    assert recipient_domain(["a@other.example"], domains) is None
    assert recipient_domain([], domains) is None


def test_load_list_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "allow.list"
    path.write_bytes(b"dkim:ok.example\n\xff\n")
    with pytest.raises(ProfileError) as err:
        load_list(path, which="allow", config_file=tmp_path / "otpguard.toml", key="policy.allow_file")
    assert err.value.file == str(path) and "UTF-8" in err.value.problem
    with pytest.raises(ProfileError) as err:
        load_list(tmp_path / "missing.list", which="allow", config_file=tmp_path / "otpguard.toml",
                  key="policy.allow_file")
    assert err.value.key == "policy.allow_file" and "missing.list" in err.value.problem
