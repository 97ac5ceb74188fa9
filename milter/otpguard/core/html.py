"""HTML: visible text, links with their visible text, forms and image link targets."""
from __future__ import annotations

import re
from dataclasses import dataclass

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from .message import Form, Link

_HIDDEN_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0+(?:\.0+)?(?:px|pt|em|rem|%)?\s*(?:;|!|$)"
    r"|opacity\s*:\s*0(?:\.0+)?\s*(?:;|!|$)|max-height\s*:\s*0", re.I)
_BLOCKS = ("p,div,br,td,th,tr,li,h1,h2,h3,h4,h5,h6,table,blockquote,section,article,header,footer,"
           "ul,ol,dd,dt,center,hr,title,form,option")

@dataclass(slots=True)
class _Html:
    text: str
    links: list[Link]
    forms: list[Form]


def parse_html(html: str, max_links: int) -> _Html:
    """Visible text, links with their visible text, forms and image link targets."""
    tree = HTMLParser(html)
    tree.strip_tags(["script", "style", "noscript", "template", "head"])
    # Hidden elements carry filler that breaks words apart; drop them from the visible text.
    for node in tree.css("[style]"):
        style = node.attributes.get("style") or ""
        if _HIDDEN_STYLE.search(style):
            node.decompose()
    links: list[Link] = []
    for node in tree.css("a[href], area[href]"):
        if len(links) >= max_links:
            break
        href = (node.attributes.get("href") or "").strip()
        if not href:
            continue
        text = node.text(deep=True, separator=" ", strip=True)
        if not text:
            img = node.css_first("img")
            if img is not None:
                text = img.attributes.get("alt") or ""
        links.append(Link(href=href, text=text[:500], source="html"))
    forms = []
    for node in tree.css("form"):
        inputs = tuple((i.attributes.get("type") or "text").lower() for i in node.css("input"))
        forms.append(Form(action=(node.attributes.get("action") or "").strip(),
                          has_password="password" in inputs, inputs=inputs[:50]))
        if node.attributes.get("action") and len(links) < max_links:
            links.append(Link(href=node.attributes["action"].strip(), text="", source="form"))
    # Block elements end a line; inline ones do not, so "Ama<span>zon</span>" stays one word.
    for node in tree.css(_BLOCKS):
        node.insert_after("\n")
    root = tree.body or tree.root
    text = root.text(separator="", strip=False) if root is not None else ""
    return _Html(text=text, links=links, forms=forms)
