"""Attachment text: PDF (text and link annotations), calendar invitations, DOCX and RTF documents."""
from __future__ import annotations

import io
import re
import zipfile


def pdf_text(data: bytes, max_pages: int) -> str:
    """Text of the first pages of a PDF, and its link targets; empty on any error."""
    text, uris, _ = pdf_read(data, max_pages)
    return "\n".join([text] + [f" {u} " for u in uris]) if (text or uris) else ""


def pdf_read(data: bytes, max_pages: int) -> tuple[str, list[str], str]:
    """(text of the first pages, link annotation targets, a note) of a PDF.

    A PDF encrypted with an empty user password opens in every reader without a question
    (ISO 32000-2 7.6.4.3: the user password decrypts, and an empty one is the default): it is
    decrypted here too, and noted. One with a real password cannot be read, by us or by a
    filter: the note says so. Empty on any error (broken, odd fonts)."""
    if max_pages <= 0:
        return "", [], ""
    note = ""
    try:
        import logging

        from pypdf import PdfReader

        logging.getLogger("pypdf").setLevel(logging.ERROR)
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except Exception:  # noqa: BLE001 - an unsupported algorithm (or no crypto provider)
                opened = 0
            if not opened:
                return "", [], "PDF encrypted with a password"
            note = "PDF encrypted with an empty user password (opens without asking)"
        out: list[str] = []
        uris: list[str] = []
        for page in reader.pages[:max_pages]:
            out.append(page.extract_text() or "")
            # Link annotations carry the lure URL in many PDF lures.
            for annot in page.get("/Annots") or []:
                try:
                    action = annot.get_object().get("/A", {})
                    uri = action.get("/URI") or action.get("/F")
                except Exception:  # noqa: BLE001 - malformed annotation objects
                    uri = None
                if isinstance(uri, (str, bytes)) and len(uris) < 200:
                    uris.append(uri.decode("latin-1") if isinstance(uri, bytes) else str(uri))
        return "\n".join(out), uris, note
    except Exception:  # noqa: BLE001 - pypdf raises many types on hostile input
        return "", [], note


def calendar_read(data: bytes, limit: int) -> tuple[str, list[str]]:
    """(text, URLs) of an iCalendar invitation (RFC 5545): the summary, description, location,
    organizer's name and the URL/ATTACH properties, which clients show on the invitation."""
    text_props = ("SUMMARY", "DESCRIPTION", "LOCATION", "COMMENT", "X-ALT-DESC")
    link_props = ("URL", "ATTACH", "CONFERENCE")
    texts: list[str] = []
    urls: list[str] = []
    try:
        from icalendar import Calendar

        cal = Calendar.from_ical(data[:limit].decode("utf-8", "replace"))
        for comp in cal.walk():
            for name in text_props:
                value = comp.get(name)
                if value is not None:
                    texts.append(str(value))
            organizer = comp.get("ORGANIZER")
            if organizer is not None:
                cn = getattr(organizer, "params", {}).get("CN")
                if cn:
                    texts.append(str(cn))
            for name in link_props:
                value = comp.get(name)
                for v in value if isinstance(value, list) else [value]:
                    if v is not None and len(urls) < 100:
                        urls.append(str(v))
    except Exception:  # noqa: BLE001 - hostile or broken calendars: the unfolded lines instead
        unfolded = data[:limit].decode("utf-8", "replace").replace("\r\n ", "").replace("\n ", "")
        for line in unfolded.splitlines():
            name, _, value = line.partition(":")
            key = name.split(";", 1)[0].upper()
            if key in text_props:
                texts.append(value.replace("\\n", "\n").replace("\\,", ",").replace("\\;", ";"))
            elif key in link_props and len(urls) < 100:
                urls.append(value)
    return "\n".join(texts), urls


_DOCX_TEXT = re.compile(rb"<w:t(?:\s[^>]*)?>([^<]*)</w:t>|<w:p[ >]|w:instr[^>]*HYPERLINK\s+&quot;([^&]+)")


def docx_text(data: bytes, limit: int) -> str:
    """Text runs of word/document.xml (and hyperlink targets) from an Office Open XML file."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            parts = []
            for name in ("word/document.xml", "word/_rels/document.xml.rels"):
                try:
                    info = zf.getinfo(name)
                except KeyError:
                    continue
                if info.file_size > limit:
                    continue
                parts.append(zf.read(name))
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError, NotImplementedError, EOFError):
        return ""
    out = []
    for blob in parts:
        for m in _DOCX_TEXT.finditer(blob):
            out.append((m.group(1) or m.group(2) or b" ").decode("utf-8", "replace"))
        out.extend(u.decode("utf-8", "replace") for u in re.findall(rb'Target="(https?://[^"]+)"', blob))
    return " ".join(out)


_RTF_TOKEN = re.compile(r"\\'([0-9a-fA-F]{2})|\\u(-?\d+)\??|\\([a-z]+)(-?\d+)? ?|([{}])|\\([^a-z])|([^\\{}]+)")
_RTF_SKIP_DEST = {"fonttbl", "colortbl", "stylesheet", "info", "pict", "header", "footer", "generator",
                  "themedata", "colorschememapping", "datastore", "latentstyles", "listtable", "rsidtbl"}


def rtf_text(data: bytes, limit: int) -> str:
    """Plain text of an RTF document: control words dropped, hex and Unicode escapes decoded."""
    src = data[:limit].decode("latin-1")
    out: list[str] = []
    skip_depth = 0
    depth = 0
    codepage = "cp1252"
    for m in _RTF_TOKEN.finditer(src):
        hexbyte, uni, word, arg, brace, sym, text = m.groups()
        if brace == "{":
            depth += 1
            continue
        if brace == "}":
            depth -= 1
            if skip_depth and depth < skip_depth:
                skip_depth = 0
            continue
        if skip_depth:
            continue
        if word:
            if word in _RTF_SKIP_DEST or word == "object":
                skip_depth = depth
            elif word == "ansicpg" and arg:
                codepage = f"cp{arg}"
            elif word in ("par", "line", "tab", "cell", "row"):
                out.append(" ")
        elif hexbyte:
            try:
                out.append(bytes([int(hexbyte, 16)]).decode(codepage, "replace"))
            except LookupError:
                out.append(bytes([int(hexbyte, 16)]).decode("cp1252", "replace"))
        elif uni:
            out.append(chr(int(uni) % 65536))
        elif sym == "*":
            skip_depth = depth
        elif text:
            out.append(text.replace("\r", "").replace("\n", ""))
    return "".join(out)
