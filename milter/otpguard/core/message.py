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
    source: str  # html | text | form | image | attachment


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
