"""URLs: finding them in plain text, and the host a URL points to."""
from __future__ import annotations

import re
from urllib.parse import unquote

from .message import Link

_URL_RE = re.compile(r"""(?:(?:https?|ftp)://|www\.)[^\s<>"'\])}]+""", re.I)
_TRAILING_PUNCT = ".,;:!?)'\""
# Where a _URL_RE match starts: h, f or w (re.I knows no other case of them), then, looked at
# from that character, a scheme or "www." and one character of the URL.
_URL_START = re.compile(r"""[hHfFwW](?<=(?=(?i:(?:https?|ftp)://|www\.)[^\s<>"'\])}])(?s:.))""")


def text_links(text: str, max_links: int) -> list[Link]:
    """URLs written out in plain text: what _URL_RE.finditer finds, found faster.

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
        links.append(Link(href=match.group(0).rstrip(_TRAILING_PUNCT), text="", source="text"))
        pos = match.end()
    return links


def host_of(url: str) -> str:
    """The host of a URL, lower-case, without userinfo and port; '' when there is none."""
    url = url.strip()
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
