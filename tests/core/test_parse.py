"""Parsing: any real mail in, facts out, never an exception."""
from __future__ import annotations

import email
import email.header
import email.errors
import email.message
import re
from email.utils import getaddresses

from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import mail
from otpguard.core.settings import AnalysisConfig
from otpguard.core.attachments import rtf_text
from otpguard.core.charset import decode_bytes
from otpguard.core.headerfields import decode_header_value, split_address
from otpguard.core.mime import message_from_bytes
from otpguard.core.parse import parse_message
from otpguard.core.urls import _TRAILING_PUNCT, _URL_RE, host_of, resolve, text_links

LIMITS = AnalysisConfig()


def test_iso_2022_jp_subject_display_name_and_body_are_decoded():
    msg = parse_message(mail("display_name_spoof_ja_iso2022jp.eml"), LIMITS)
    assert msg.subject == "【重要】Amazonアカウントの不正ログインについて"
    assert msg.from_[0].display == "Amazon.co.jp"
    assert msg.from_[0].domain == "shop-notice.example"
    assert "不正なログイン" in msg.text
    assert [link.href for link in msg.links if link.source != "bare"] == ["https://amazon-co-jp.account-check.example/login"]
    # "Amazon.co.jp" written in the text is a host name a client links (source "bare").
    assert [link.href for link in msg.links if link.source == "bare"] == ["http://amazon.co.jp/"]


def test_shift_jis_8bit_body_and_header_are_decoded():
    msg = parse_message(mail("homoglyph_display_shift_jis.eml"), LIMITS)
    assert msg.subject == "アカウントのロックについて"
    assert "ロックされました" in msg.text
    assert msg.from_[0].display.startswith("\u0410mazon")  # Cyrillic A kept as sent


def test_euc_jp_labelled_gb2312_is_read_as_japanese(corpus):
    # Real lure: Japanese in EUC-JP with a gb2312 label (kana rows coincide in both charsets).
    msg = parse_message((corpus / "phish" / "034.eml").read_bytes(), LIMITS)
    assert msg.from_[0].display.startswith("Amazon顧客サービス")
    assert "プライム会員" in msg.text


def test_mislabelled_and_unknown_charsets_fall_back_without_error():
    assert decode_bytes("café".encode("utf-8"), "x-no-such-charset") == "café"
    assert decode_bytes("パスワードを変更してください".encode("euc-jp"), "gb2312") == "パスワードを変更してください"
    assert decode_bytes(b"\xff\xfe\x00broken", "utf-8")  # something readable, no exception
    assert decode_header_value("=?utf-8?b?!!!notbase64?=") is not None
    # Found by make fuzz: a NUL inside a charset label made codecs.lookup raise ValueError.
    assert decode_header_value("=?utf\x00-8?q?Amazon?=") is not None
    msg = parse_message(b'From: "=?utf\x00-8?q?Amazon?=" <a@b.example>\r\n\r\nhi', LIMITS)
    assert msg.from_[0].domain == "b.example"


def test_rfc2047_words_split_across_lines_join():
    value = email.header.Header("パスワードの再設定のお知らせ", "iso-2022-jp").encode()
    assert decode_header_value(value) == "パスワードの再設定のお知らせ"


def test_html_links_keep_their_visible_text_and_forms_are_seen():
    msg = parse_message(mail("link_text_mismatch.eml"), LIMITS)
    html_links = [(link.href, link.text) for link in msg.links if link.source == "html"]
    assert ("https://bit.ly/3xYzAbc", "https://www.amazon.com/your-account") in html_links
    assert msg.forms and msg.forms[0].has_password
    assert "<a" not in msg.text and "payment was declined" in msg.text


def test_hidden_filler_is_removed_from_visible_text():
    raw = (b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n"
           b"<p>Ama<span style='display:none'>XQ7Z</span>zon Pri<span style=\"font-size:0px\">K9</span>me</p>")
    assert "Amazon Prime" in parse_message(raw, LIMITS).text


def test_pdf_attachment_text_is_extracted(corpus):
    msg = parse_message((corpus / "phish" / "038.eml").read_bytes(), LIMITS)
    assert any(a.filename.lower().endswith(".pdf") for a in msg.attachments)
    assert "amazon" in msg.attachment_text.lower()


def test_rtf_text_drops_control_words():
    assert rtf_text(rb"{\rtf1\ansi{\fonttbl{\f0 Arial;}}\f0 Your Amazon account is \b locked\b0 .\par}", 10000).strip() \
        == "Your Amazon account is locked."


def test_size_caps_bound_parts_and_links():
    limits = AnalysisConfig(max_links=5, max_parts=3, max_part_bytes=2048)
    links = "".join(f"<a href='http://x{i}.example/'>x</a>" for i in range(100))
    parts = "".join(f"--b\r\nContent-Type: text/html\r\n\r\n{links}\r\n" for _ in range(10))
    raw = f"From: a@b.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n{parts}--b--\r\n".encode()
    msg = parse_message(raw, limits)
    assert len(msg.links) <= 5
    assert "too many parts" in msg.defects


def test_deep_nesting_is_bounded_without_recursion_error():
    depth = 1000
    raw = b"From: a@b.example\r\n"
    for i in range(depth):
        raw += f"Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n".encode()
    raw += b"Content-Type: text/plain\r\n\r\nhello\r\n"
    msg = parse_message(raw, LIMITS)
    assert msg is not None


def test_header_fields_are_decoded_when_read():
    raw = ("From: a@b.example\r\nX-Note: =?utf-8?b?44K744Kt44Ol44Oq44OG44Kj?=\r\n"
           "Received: from a\r\n\tby b\r\nReceived: from c\r\nX-Raw: caf\xc3\xa9\r\n\r\nbody\r\n").encode("latin-1")
    msg = parse_message(raw, LIMITS)
    assert msg.header("x-note") == msg.header("X-Note") == "\u30bb\u30ad\u30e5\u30ea\u30c6\u30a3"
    assert msg.header_all("received") == ["from a by b", "from c"]
    assert msg.header("x-raw") == "caf\u00e9" and msg.header("x-missing") is None
    assert msg.headers == (("from", "a@b.example"), ("x-note", msg.header("x-note")), ("received", "from a by b"),
                           ("received", "from c"), ("x-raw", "caf\u00e9"))


def test_mbox_from_line_is_not_a_header(corpus):
    raw = next((corpus / "traffic" / "easy_ham").iterdir()).read_bytes()
    assert raw.startswith(b"From ")
    msg = parse_message(raw, LIMITS)
    assert msg.headers[0][0] != "from " and msg.from_


def test_host_of_handles_userinfo_ports_and_ipv6():
    assert host_of("https://www.amazon.com@evil.example:8443/x") == "evil.example"
    assert host_of("http://[2001:db8::1]/login") == "2001:db8::1"
    assert host_of("www.Amazon.co.jp/gp") == "www.amazon.co.jp"
    assert host_of("mailto:a@b.example") == ""


# Specials, quoting, folding, controls and the whitespace str.split() knows but RFC 5322 not.
_ADDRESS_CHARS = list('aZé語.-_+ \t"<>@,;:()[]\\=?\'\r\n\x00\x1f\x7f\x85\x9f\xa0\u2028\u3000')


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_ADDRESS_CHARS), max_size=24).map("".join))
def test_address_fast_path_reads_any_value_as_the_stdlib_does(value: str) -> None:
    assert split_address(value) == getaddresses([value])


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet='aZé語. \t"-\xa0\u3000\x1f', max_size=10), st.booleans(),
       st.sampled_from(["<a@b.example>", " <a.b+c@d.example>", "a@b.example", "<a@b.example", "x@y>",
                        "\xa0<a@b.example>", "<a\xa0b@c.example>"]))
def test_address_fast_path_on_display_name_shapes(name: str, quoted: bool, addr: str) -> None:
    value = (f'"{name}"' if quoted else name) + addr
    assert split_address(value) == getaddresses([value])


# --- the shortcut of message_from_bytes ---------------------------------------------------------

def _same_message(a: email.message.Message, b: email.message.Message) -> bool:
    """Same header fields (raw), unix-from, structure and payloads, recursively."""
    if list(a.raw_items()) != list(b.raw_items()) or a.get_unixfrom() != b.get_unixfrom():
        return False
    if [type(d) for d in a.defects] != [type(d) for d in b.defects]:
        return False
    if (a.preamble, a.epilogue, a.get_default_type()) != (b.preamble, b.epilogue, b.get_default_type()):
        return False
    if a.is_multipart() or b.is_multipart():
        pa, pb = a.get_payload(), b.get_payload()
        return a.is_multipart() == b.is_multipart() and len(pa) == len(pb) and \
            all(_same_message(x, y) for x, y in zip(pa, pb))
    return a.get_payload() == b.get_payload() and a.get_payload(decode=True) == b.get_payload(decode=True)


def _finditer_links(text: str, max_links: int) -> list[str]:
    """text_links by the plain definition: every _URL_RE match in order."""
    return [resolve(m.group(0).rstrip(_TRAILING_PUNCT)) for m in _URL_RE.finditer(text)][:max_links]


# Scheme and www pieces, case variants (U+017F is "s" to re.I, U+0130 lowers to two characters),
# the characters that end a URL, and filler.
_URL_PIECES = ["http", "HTTPS", "hTtPs", "ftp", "FTP", "ftps", "s", "\u017f", "\u0130", "://", ":/", "//", "www.",
               "WWW", "w", ".", "x", "/", " ", "\n", '"', ">", ")", "]", "?", "語"]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_URL_PIECES), max_size=30).map("".join), st.integers(0, 4))
@example("a httpſ://x, b \u0130https://y", 4)
@example("://" * 500 + "http://a" * 300 + "www." * 300 + "http:// " * 100, 4)
def test_text_links_finds_what_the_url_pattern_finds(text: str, max_links: int) -> None:
    assert [link.href for link in text_links(text, max_links)] == _finditer_links(text, max_links)


def test_urls_can_only_start_with_the_letters_the_url_search_skips_to():
    # re.I matches h, f and w only in their ASCII cases (this Python's Unicode tables): the
    # class _URL_START starts with misses no character a URL could start with.
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert set(re.findall("[hfw]", every, re.I)) == set("hHfFwW")


def test_text_links_finds_what_the_url_pattern_finds_in_corpus_text(corpus):
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix not in (".tsv", ".md"))
    with_links = 0
    for path in files[::3]:
        text = parse_message(path.read_bytes(), LIMITS).text
        found = [link.href for link in text_links(text, 1000)]
        assert found == _finditer_links(text, 1000), path
        with_links += bool(found)
    assert with_links > 100  # the comparison saw real URLs, not only empty lists


def test_shortcut_builds_the_stdlib_message_for_every_corpus_mail(corpus, monkeypatch):
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix not in (".tsv", ".md"))
    assert len(files) > 1000
    fallbacks = []
    real = email.message_from_string
    monkeypatch.setattr(email, "message_from_string", lambda text, **kw: fallbacks.append(1) or real(text, **kw))
    for path in files:
        raw = path.read_bytes()
        if raw.startswith(b"From "):
            raw = raw.split(b"\n", 1)[1]  # as parse_message does with mbox lines
        assert _same_message(message_from_bytes(raw), email.message_from_bytes(raw)), path
    assert len(fallbacks) < len(files) / 20  # the comparison tested the shortcut, not the stdlib twice


def test_shortcut_builds_plain_and_multipart_mail_and_leaves_odd_shapes_to_the_stdlib(monkeypatch):
    plain = b"From: a@b.example\r\nSubject: hi\r\n\tthere\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    multi = (b'Content-Type: multipart/alternative; boundary="b"\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n'
             b"\r\nx\r\n--b \t\r\nContent-Type: text/html\r\n\r\n<p>y</p>\r\n\r\n--b--\r\nepi\r\n")
    headerless = b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n'
    calls = []
    real = email.message_from_string
    monkeypatch.setattr(email, "message_from_string", lambda text, **kw: calls.append(text) or real(text, **kw))
    msg = message_from_bytes(plain)
    assert calls == [] and msg["Subject"] == "hi\r\n\tthere" and msg.get_payload() == "body\r\n"
    msg = message_from_bytes(multi)
    assert calls == [] and (msg.preamble, msg.epilogue) == ("pre", "epi\r\n")
    assert [p.get_payload() for p in msg.get_payload()] == ["x", "<p>y</p>\r\n"]
    assert message_from_bytes(headerless).is_multipart() and len(calls) == 1  # a part without header lines


_HEADER_LINES = st.sampled_from([
    "From: a@b.example", "Subject: =?UTF-8?B?5pel5pys?=", " folded", "\tfolded tab", "X-Empty:", "X-Sp:   x ", "X-Tab:\t \tv",
    "Content-Type: text/html; charset=utf-8", "Content-Type: multipart/mixed; boundary=zz", "Content-Type: message/rfc822",
    "Content-Transfer-Encoding: base64", "From nobody Mon Jan  1", ": no name", "No colon here", "Bad Name: x",
    "X-8bit: \udce9t\udce9", "X-CR: a\rb", "", "--zz", "Content-Type: TEXT/Plain",
])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_HEADER_LINES, max_size=8), st.lists(st.sampled_from(["\r\n", "\n"]), min_size=9, max_size=9),
       st.sampled_from(["\r\n\r\n", "\n\n", "\r\n\n", "\n\r\n", "\r\r", ""]),
       st.sampled_from(["", "body\r\n", "QUJD\r\n", "--zz\r\n\r\nx\r\n--zz--\r\n", "a\rb\n\nc"]))
def test_shortcut_agrees_with_the_stdlib_on_odd_header_blocks(lines, ends, separator, body):
    head = "".join(line + end for line, end in zip(lines, ends))
    head = head[: -len(ends[len(lines) - 1])] if lines else head
    raw = (head + separator + body).encode("utf-8", "surrogateescape")
    assert _same_message(message_from_bytes(raw), email.message_from_bytes(raw))


# Body lines that look like boundaries without being ones (or are), and ordinary text.
_BODY_LINES = st.sampled_from(["text"] * 12 + ["", "", " --zz", "--zzz", "--zz x", "-- zz", "--in", "--in--",
                                                "caf\udce9", "--zz", "--zz--", "--zz  ", "--zz--\t"])
_GOOD_HEADS = st.sampled_from(["Content-Type: text/plain", "Content-Type: text/html; charset=utf-8",
                               "Content-Transfer-Encoding: base64", "Content-Disposition: attachment",
                               "X-Folded: a\r\n\tb"])
_ODD_HEADS = st.sampled_from(["Content-Type: message/rfc822", "X-Odd line", "Content-Type: multipart/mixed"])


@st.composite
def _part(draw, depth: int) -> list[str]:
    """One body part: mostly well formed, sometimes a nested multipart, sometimes odd."""
    roll = draw(st.integers(0, 9))
    if roll == 0:
        heads = draw(st.lists(_ODD_HEADS, min_size=1, max_size=1))
    elif roll == 1 and depth == 0:
        inner = ["Content-Type: multipart/alternative; boundary=in", ""]
        inner += draw(st.lists(_BODY_LINES, max_size=1))
        for _ in range(draw(st.integers(1, 2))):
            inner += ["--in", "Content-Type: text/plain", ""] + draw(st.lists(_BODY_LINES, max_size=3))
        return inner + (["--in--"] if draw(st.integers(0, 4)) else []) + draw(st.lists(_BODY_LINES, max_size=2))
    else:
        heads = draw(st.lists(_GOOD_HEADS, max_size=2))
    blank = [""] if draw(st.integers(0, 9)) else []
    return heads + blank + draw(st.lists(_BODY_LINES, max_size=4))


@st.composite
def _multipart_mail(draw) -> bytes:
    """Multipart mail, mostly well formed: boundaries with blanks, sometimes doubled or missing,
    nested multiparts, boundary look-alikes inside parts, preambles and epilogues, LF and CRLF."""
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    head = draw(st.sampled_from(['Content-Type: multipart/mixed; boundary="zz"'] * 6 + [
        "Content-Type: multipart/mixed", "Content-Type: multipart/digest; boundary=zz",
        'Content-Type: multipart/mixed; boundary="zz"\r\nContent-Transfer-Encoding: base64']))
    lines = [head, "Subject: s", ""] + draw(st.lists(_BODY_LINES, max_size=2))  # preamble
    for _ in range(draw(st.integers(0, 3))):
        lines.append(draw(st.sampled_from(["--zz"] * 4 + ["--zz \t"])))
        lines += draw(_part(0))
    if draw(st.integers(0, 5)):
        lines.append(draw(st.sampled_from(["--zz--", "--zz-- "])))
    lines += draw(st.lists(_BODY_LINES, max_size=2))  # epilogue
    text = eol.join(lines) + draw(st.sampled_from(["", eol]))
    return text.replace("\r\n", eol).encode("utf-8", "surrogateescape")


@settings(max_examples=4000, deadline=None)
@given(_multipart_mail())
def test_shortcut_agrees_with_the_stdlib_on_multipart_shapes(raw):
    assert _same_message(message_from_bytes(raw), email.message_from_bytes(raw)), raw


def test_boundaries_holding_a_line_break_are_left_to_the_stdlib():
    # A folded quoted boundary, or %0A / %0D%0A in an RFC 2231 one, can never match a line.
    for raw in (b'Content-Type:multipart/x;boundary*=%0A1\n\n--\n1\nA:\n\n--\n1--',
                b'Content-Type:multipart/x;boundary="\n 1"\n\n--\n 1\nA:\n\n--\n 1--',
                b"Content-Type:multipart/x;boundary*=''a%0D%0Ab\r\n\r\n--a\r\nb\r\nA: 1\r\n\r\nx\r\n--a\r\nb--\r\n"):
        assert _same_message(message_from_bytes(raw), email.message_from_bytes(raw)), raw


def test_a_boundary_made_of_dashes_splits_as_the_stdlib_does():
    raw = (b'Content-Type: multipart/mixed; boundary="--"\r\n\r\n' + b"-" * 5000 + b"\r\n----\r\nA: 1\r\n\r\n"
           + b"-" * 5000 + b"\r\n------\r\n")
    assert _same_message(message_from_bytes(raw), email.message_from_bytes(raw))


def test_a_bare_host_is_taken_whole_or_not_at_all():
    """"Amazon.co.jp:" is not a link (a colon follows), and never the host "Amazon.co" either: the
    host name is not shortened until something fits."""
    from otpguard.core.urls import bare_links

    assert bare_links("Subject: Amazon.co.jp: your code", 10, set()) == []
    assert [link.href for link in bare_links("visit amazon-verify.top.", 10, set())] == ["http://amazon-verify.top/"]


_FIELD_NAMES = st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE", "Subject", "X-A", "Received", "From"])
# Values with parameters, RFC 2231 pieces and mangled ones among them.
_VALUES = st.one_of(st.text(alphabet="abc/;= \udcff", max_size=10),
                    st.sampled_from(["text/plain; charset=utf-8", 'multipart/mixed; boundary="b=1"; x',
                                     "a/b; name*0*=utf-8''%E2%82; name*1=c", "a/b; name*=x'y'%", "a/b;;=;"]))
_EDITS = st.lists(st.tuples(st.sampled_from(["add", "del", "replace", "set_param", "set_boundary"]), _FIELD_NAMES,
                            st.text(alphabet="abc/;=\u00e9", max_size=8)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_FIELD_NAMES, _VALUES), max_size=12), _EDITS)
def test_indexed_message_answers_as_the_stdlib_message_through_edits(fields, edits):
    """mime.IndexedMessage (an index of field names) answers get(), [] and `in` as
    email.message.Message does, also after fields are added, deleted and replaced."""
    from otpguard.core.mime import IndexedMessage

    ours, theirs = IndexedMessage(), email.message.Message()
    for m in (ours, theirs):
        for name, value in fields:
            m.set_raw(name, value)

    def same() -> None:
        for name in ("content-type", "Subject", "x-a", "received", "from", "missing"):
            assert str(ours.get(name)) == str(theirs.get(name)) and (name in ours) == (name in theirs)
            assert str(ours[name]) == str(theirs[name])
            for header in ("content-type", "x-a"):
                try:
                    want = theirs.get_params(header=header)
                except Exception as exc:  # noqa: BLE001 - mangled parameters: both must refuse
                    want = type(exc)
                try:
                    got = ours.get_params(header=header)
                except Exception as exc:  # noqa: BLE001
                    got = type(exc)
                assert got == want

    same()
    for op, name, value in edits:
        for m in (ours, theirs):
            try:
                if op == "add":
                    m[name] = value
                elif op == "del":
                    del m[name]
                elif op == "replace":
                    m.replace_header(name, value)
                elif op == "set_param":
                    m.set_param("charset", value or "x", header=name)
                else:
                    m.set_boundary(value or "b")
            except (KeyError, TypeError, LookupError, email.errors.HeaderParseError):  # the stdlib refuses some edits
                pass
        same()


def test_a_pending_message_completed_is_the_whole_message_for_every_corpus_mail(corpus):
    """The engine parses with whole=False and completes brand-claiming mail (parse.complete):
    for every development and traffic message, the completed message is the one a whole parse
    gives, field for field (links, limits and evidence in the same order)."""
    from otpguard.core.parse import complete

    limits = AnalysisConfig()
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix not in (".tsv", ".md"))
    assert len(files) > 1000
    for path in files:
        raw = path.read_bytes()
        pending = parse_message(raw, limits, whole=False)
        assert pending.pending
        assert complete(pending, limits.max_links) == parse_message(raw, limits), path
