"""Charsets: decode text bytes by their label, repairing the labels mail software gets wrong."""
from __future__ import annotations

import codecs
import re


# Labels mail software gets wrong, mapped to the superset that decodes what they really send.
_CHARSET_ALIASES = {
    "gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
    "shift_jis": "cp932", "shift-jis": "cp932", "sjis": "cp932", "x-sjis": "cp932", "ms_kanji": "cp932",
    "windows-31j": "cp932", "iso-2022-jp": "iso2022_jp_ext", "euc-jp": "euc_jis_2004",
    "ks_c_5601-1987": "cp949", "euc-kr": "cp949", "iso-8859-1": "cp1252", "latin1": "cp1252",
    "us-ascii": "utf-8", "ascii": "utf-8", "unicode-1-1-utf-7": "utf-7", "x-unknown": "utf-8",
    "big5": "big5hkscs", "tis-620": "cp874",
}
_KANA_RE = re.compile(r"[\u3041-\u3096\u30a1-\u30fa]")


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().strip('"').lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except (LookupError, ValueError):  # ValueError: a NUL inside the label
        return None


def decode_bytes(data: bytes, label: str | None) -> str:
    """Decode text bytes by their label, repairing wrong or missing labels."""
    if not data:
        return ""
    if data.isascii() and b"\x1b" not in data:
        return data.decode("ascii")
    codec = _codec(label)
    if b"\x1b$B" in data or b"\x1b$@" in data:  # ISO-2022-JP escape: whatever the label says
        codec = "iso2022_jp_ext"
    if codec:
        try:
            text = data.decode(codec)
        except (UnicodeDecodeError, LookupError):
            text = None
        else:
            # Japanese sent as EUC-JP but labelled gb2312: kana rows coincide in both, so a
            # Chinese decode full of kana is really Japanese.
            if codec.startswith("gb") and len(_KANA_RE.findall(text)) * 10 > len(text):
                try:
                    return data.decode("euc_jis_2004")
                except UnicodeDecodeError:
                    pass
            return text
    for guess in ("utf-8",):
        try:
            return data.decode(guess)
        except UnicodeDecodeError:
            pass
    return _detect(data, codec)


def _detect(data: bytes, fallback: str | None) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(data[:65536]).best()
    if best is not None:
        try:
            return data.decode(best.encoding, errors="replace")
        except LookupError:
            pass
    return data.decode(fallback or "cp1252", errors="replace")
