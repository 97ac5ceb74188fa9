"""URLs as a browser parses them (the WHATWG URL Standard, by ada-url): an href resolved against
<base href>, "https:host", backslashes, tabs and newlines inside the scheme, IPv4 written in
hex, octal or as one integer; URLs written out in plain text, bare host names included; and
the host a URL points to."""
from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import unquote

from ada_url import URL

from .message import Link

_URL_RE = re.compile(r"""(?:(?:https?|ftp)://|www\.)[^\s<>"'\])}]+""", re.I)
_TRAILING_PUNCT = ".,;:!?)'\""
# Where a _URL_RE match starts: h, f or w (re.I knows no other case of them), then, looked at
# from that character, a scheme or "www." and one character of the URL.
_URL_START = re.compile(r"""[hHfFwW](?<=(?=(?i:(?:https?|ftp)://|www\.)[^\s<>"'\])}])(?s:.))""")
# A host name written without a scheme ("amazon-verify.top/login"): labels, a dot, letters,
# and a path; mail clients make these links. Found after a dot-letter gate (C speed), checked
# against the Public Suffix List before it counts.
_BARE_GATE = re.compile(r"\.[A-Za-z]{2}")
# The host is taken whole (an atomic group): "Amazon.co.jp:" must not give back ".jp" and leave
# "Amazon.co" as a host of its own.
_BARE_WORD = re.compile(r"((?>(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}))"
                        r"(?![\w@\-:])((?:/[^\s<>\"'\])}]*)?)")
# Public suffixes that are also common file extensions or abbreviations: "invoice.zip",
# "movie.mov", "e.g" (not a suffix) - clients do not make them links.
_NOT_BARE_SUFFIXES = frozenset({"zip", "mov", "py", "sh", "pl", "md", "rs", "so", "do", "ps", "cs", "ai", "it", "is"})
# Web schemes: where a browser goes; other schemes (mailto:, tel:, cid:) stay as written.
WEB_SCHEMES = ("http:", "https:", "ftp:")
# Characters WHATWG removes anywhere in a URL (tab, line feed, carriage return) and at its
# ends (C0 controls and space): the scheme "ht\ttps" is https to a browser.
_STRIPPED = str.maketrans("", "", "\t\n\r")


@lru_cache(maxsize=16384)
def resolve(href: str, base: str = "") -> str:
    """The URL a browser goes to for this href (the WHATWG serialisation), resolved against
    base when relative; the href as written (trimmed) when it is no web URL a browser accepts.

    "https:evil.example" -> "https://evil.example/"; "http://0x7f.1" -> "http://127.0.0.1/";
    "//host/x" -> "https://host/x" (a webmail page is https); "www.host/x" -> "http://www.host/x"
    (mail clients make these links)."""
    written = href.strip("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17"
                         "\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f \t\n\r")
    compact = written.translate(_STRIPPED)
    if not compact:
        return written
    lowered = compact[:8].lower()
    try:
        if lowered.startswith(("http:", "https:", "ftp:")) or lowered.startswith(("http\\", "https\\")):
            return URL(compact).href
        if base:
            url = URL(compact, base=base)
            return url.href if url.protocol in WEB_SCHEMES else written
        if compact.startswith(("//", "\\\\", "/\\", "\\/")):
            return URL(compact, base="https://invalid.invalid/").href
        if lowered.startswith("www."):
            return URL("http://" + compact).href
    except ValueError:
        return written
    return written


def absolute_base(href: str) -> str:
    """A <base href> as a base URL: only an absolute web URL can be one."""
    resolved = resolve(href)
    return resolved if resolved.lower().startswith(WEB_SCHEMES) else ""


def text_links(text: str, max_links: int) -> list[Link]:
    """URLs written out in plain text: what _URL_RE.finditer finds, found faster, each as the
    browser resolves it.

    _URL_RE starts with a case-insensitive alternation, which the regex engine tries at every
    position of the text. _URL_START starts with the class of the characters a URL can start
    with, so the engine skips every other position in C; its lookbehind then checks that a URL
    starts there, and _URL_RE itself reads it. The next search starts where that URL ends, as
    finditer's does, so the matches are finditer's (tested), hostile text included.
    """
    links: list[Link] = []
    pos = 0
    while len(links) < max_links and (hit := _URL_START.search(text, pos)) is not None:
        match = _URL_RE.match(text, hit.start())  # never None: the gate saw a whole match's start
        links.append(Link(href=resolve(match.group(0).rstrip(_TRAILING_PUNCT)), text="", source="text"))
        pos = match.end()
    return links


def bare_links(text: str, max_links: int, seen: set[str]) -> list[Link]:
    """Host names written without a scheme ("amazon-verify.top/signin") whose suffix is a
    public suffix: mail clients link them, so a reader can follow them (source "bare").

    Words are taken by str.split (C speed) and only those holding a dot followed by two
    letters are looked at: a regex trying a host at every letter would cost a pass per word."""
    links: list[Link] = []
    pos = 0
    while max_links > 0 and (hit := _BARE_GATE.search(text, pos)) is not None:
        end_match = _SPACE.search(text, hit.start())
        end = end_match.start() if end_match is not None else len(text)
        pos = end
        start = hit.start()
        while start > 0 and not text[start - 1].isspace():
            if text[start - 1] in "/:@":
                break  # a URL (text_links has it) or an address
            start -= 1
        if start > 0 and text[start - 1] in "/:@":
            continue
        m = _BARE_WORD.match(text[start:end].lstrip("(\"'<[«「【"))
        if m is None:
            continue
        host = m.group(1).lower()
        if host.startswith("www.") or host.rsplit(".", 1)[-1] in _NOT_BARE_SUFFIXES or not _public(host):
            continue  # www. hosts are text_links' already; no public suffix: file names, "e.g"
        href = resolve("http://" + host + m.group(2).rstrip(_TRAILING_PUNCT))
        if href not in seen:
            seen.add(href)
            links.append(Link(href=href, text="", source="bare"))
            if len(links) >= max_links:
                break
    return links


_SPACE = re.compile(r"\s")


@lru_cache(maxsize=16384)
def _public(host: str) -> bool:
    """Does host end in a public suffix, with a label before it (the Public Suffix List)?"""
    from .domains import psl

    parts = psl()(host)
    return bool(parts.suffix and parts.domain)


@lru_cache(maxsize=16384)
def host_of(url: str) -> str:
    """The host of a URL as a browser reads it, lower-case, without userinfo and port; '' when
    there is none (IDN hosts in their ASCII form, xn--)."""
    url = url.strip()
    resolved = resolve(url)
    if resolved.lower().startswith(WEB_SCHEMES):
        try:
            host = URL(resolved).hostname
        except ValueError:
            host = ""
        if host:
            return host[1:-1].lower() if host.startswith("[") else host.rstrip(".").lower()
    # Not a web URL a browser accepts: the authority as written, as before.
    m = re.match(r"^(?:[a-z][a-z0-9+.-]*:)?//([^/?#\\]*)", url, re.I)
    if not m:
        if url.lower().startswith("www."):
            host = re.split(r"[/?#\\]", url, 1)[0]
        else:
            return ""
    else:
        host = m.group(1)
    host = unquote(host).rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.split(":", 1)[0].strip().rstrip(".").lower()


_JS_TARGET = re.compile(
    r"""(?:location(?:\.href)?\s*=|location\.(?:replace|assign)\s*\(|window\.open\s*\(|navigate\s*\()\s*["'`]([^"'`\s]{1,2000})["'`]""")


def script_targets(script: str, limit: int) -> list[str]:
    """Where a script sends the browser: location = "...", location.replace("..."),
    window.open("...") with a literal URL (computed targets cannot be known without running it)."""
    return [m.group(1) for m, _ in zip(_JS_TARGET.finditer(script[:200_000]), range(limit))]


_REFRESH = re.compile(r"^\s*[\d.]*\s*[;,]?\s*(?:url\s*=\s*)?['\"]?([^'\"]+)", re.I)


def refresh_target(content: str) -> str:
    """The URL of a <meta http-equiv="refresh" content="0; url=..."> (HTML 4.2.5.3)."""
    m = _REFRESH.match(content or "")
    if not m:
        return ""
    target = m.group(1).strip()
    return "" if re.fullmatch(r"[\d.;\s]*", target) else target
