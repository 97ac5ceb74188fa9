"""The parsed message: the facts every check reads (addresses, text, links, forms, attachments)."""
from __future__ import annotations

from dataclasses import dataclass

from .headerfields import decoded


@dataclass(frozen=True, slots=True)
class Address:
    display: str
    addr: str
    local: str
    domain: str


@dataclass(frozen=True, slots=True)
class Link:
    href: str
    text: str  # visible text of the anchor ("" for plain-text links)
    # Where the reader finds it: html (an <a> in the displayed HTML) | area | vml (an Outlook
    # button in a conditional comment) | form | script (onclick, or a script of an attached
    # page) | meta-refresh | text (a URL written out) | bare (a host name written without a
    # scheme, "amazon-verify.top/login") | attachment (HTML, SVG, PDF, calendar attachments) |
    # qr (a QR code in a picture). href is what a browser goes to (the WHATWG serialisation,
    # resolved against <base href>); hrefs that are no web URL stay as written.
    source: str


@dataclass(frozen=True, slots=True)
class Image:
    """An image the reader sees: a logo's alt text, title and file name claim a brand as well as words."""

    src: str  # the src URL or cid:, or the attachment's file name
    alt: str
    title: str
    href: str  # the link the image sits in ("" when none): an image button is a call to action
    source: str  # html | attachment


@dataclass(frozen=True, slots=True)
class InnerMessage:
    """A message inside the message: a message/rfc822 part, or a forward quoted inline."""

    from_: tuple[Address, ...]
    subject: str
    kind: str  # rfc822 | inline-forward


@dataclass(frozen=True, slots=True)
class Form:
    action: str
    has_password: bool
    inputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int
    text: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    # (lower-case name, value as read), in order: most fields are never looked at, so they
    # are decoded (RFC 2047, 8-bit, unfolded) when asked for, by header(), header_all(), headers.
    raw_headers: tuple[tuple[str, str], ...]
    from_: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    sender: Address | None
    return_path: Address | None
    subject: str
    text: str  # visible text of the body parts (plain text and HTML), bounded
    attachment_text: str  # text found in HTML/PDF/DOCX/RTF attachments, bounded
    links: tuple[Link, ...]
    forms: tuple[Form, ...]
    attachments: tuple[Attachment, ...]
    dkim_domains: tuple[str, ...]
    defects: tuple[str, ...]
    size: int
    title: str = ""  # the HTML <title> of the displayed part
    images: tuple[Image, ...] = ()
    inner_messages: tuple[InnerMessage, ...] = ()
    # Evidence that text was hidden from filters but not from the reader, one short phrase each
    # ("hidden by CSS inside 4 words", "right-to-left override", "variation selectors").
    obfuscation: tuple[str, ...] = ()
    # Analysis limits reached (text budget, part count, depth, size cap...): what was not read.
    limits: tuple[str, ...] = ()
    # Pictures carried by the message (image parts, data: URIs), for QR decoding when the
    # mail claims a brand (engine.py decides, then qr.py adds their links). Not a fact checks read.
    pictures: tuple[bytes, ...] = ()
    # True while the facts only a brand-claiming message needs are not read yet: the URLs and
    # host names written out in the text (links) and the Unicode tricks of the display name,
    # subject and body (obfuscation). parse.complete() reads them; the pipeline asks for it
    # once a message claims a brand (most mail never does, and never pays for them).
    pending: bool = False

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Every field as (lower-case name, decoded value), in order."""
        return tuple((k, decoded(v)) for k, v in self.raw_headers)

    def header(self, name: str) -> str | None:
        """The first field of that name, decoded."""
        name = name.lower()
        for k, v in self.raw_headers:
            if k == name:
                return decoded(v)
        return None

    def header_all(self, name: str) -> list[str]:
        """Every field of that name, decoded, in order."""
        name = name.lower()
        return [decoded(v) for k, v in self.raw_headers if k == name]
