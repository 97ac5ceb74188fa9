"""Attachment text: PDF (text and link annotations), DOCX and RTF documents."""
from __future__ import annotations

import io
import re
import zipfile


def pdf_text(data: bytes, max_pages: int) -> str:
    """Text of the first pages of a PDF; empty on any error (encrypted, broken, odd fonts)."""
    if max_pages <= 0:
        return ""
    try:
        import logging

        from pypdf import PdfReader

        logging.getLogger("pypdf").setLevel(logging.ERROR)
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            return ""
        out = []
        for page in reader.pages[:max_pages]:
            out.append(page.extract_text() or "")
            # Link annotations carry the lure URL in many PDF lures.
            for annot in page.get("/Annots") or []:
                try:
                    uri = annot.get_object().get("/A", {}).get("/URI")
                except Exception:  # noqa: BLE001 - malformed annotation objects
                    uri = None
                if uri:
                    out.append(f" {uri} ")
        return "\n".join(out)
    except Exception:  # noqa: BLE001 - pypdf raises many types on hostile input
        return ""


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
