"""Redirectors and click trackers: the real target that rides inside a URL.

Amazon's own SES click tracking (`https://x.r.us-east-1.awstrack.me/L0/https:%2F%2Fwww.amazon.com%2F.../1/...`),
its `/gp/r.html?U=...` redirects, Google's `/url?q=...` and every open redirect put the
destination in the path or the query. The reader lands on the destination, so that is what
a link is judged by; a brand tracker carrying a foreign destination is foreign.
"""
from __future__ import annotations

import re
from urllib.parse import unquote

# An absolute http(s) URL inside a query value or a path segment, percent-encoded or not.
_EMBEDDED = re.compile(r"(?:[?&][^=&#]{1,40}=|/)(https?(?::|%3a)(?://|%2f%2f)[^&#\s]+)", re.I)
_MAX_DEPTH = 3


def redirect_target(url: str) -> str | None:
    """The URL a redirector or tracker sends the reader to, or None when url carries none.

    Nested redirects (a tracker wrapping a redirector) are followed up to _MAX_DEPTH levels.
    """
    target = None
    current = url
    for _ in range(_MAX_DEPTH):
        m = _EMBEDDED.search(current, 8)  # after the scheme of the outer URL
        if m is None:
            break
        inner = m.group(1)
        # Decode once or twice: trackers double-encode (%253A); stop at the next encoded
        # separator of the outer URL's own path ("/1/0100...") only when the target was encoded.
        for _ in range(2):
            if "%" in inner[:12]:
                inner = unquote(inner)
        if inner.lower().startswith(("http://", "https://")):
            target = current = inner
        else:
            break
    return target
