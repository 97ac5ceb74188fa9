"""CSS as a mail client applies it, for one question: can the reader see this text?

Stylesheets are parsed by tinycss2 and selectors by cssselect2 (specificity, pseudo-elements);
the selectors are then matched by lexbor, selectolax's C engine, on the document tree, so a
stylesheet costs one C walk per rule. Only the properties that can hide text, colour it like
its background or generate it (::before/::after content) are kept: a newsletter's hundreds of
font and padding rules cost their parse and nothing more. Rules inside @media and other
at-rules are conditional (a width, print) and are not applied: text they would hide on some
screens is read as visible, the reading that misses no lure.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import tinycss2
import tinycss2.color3
from cssselect2 import parser as selector_parser

# Properties that decide whether text is seen (CSS 2.1 9.2.4 display, 11.2 visibility,
# 11.1 overflow and clip, 10 box sizes, 9.3 positioning; CSS Color opacity; CSS Transforms;
# CSS Masking clip-path; 12.2 generated content).
RELEVANT = frozenset({
    "display", "visibility", "opacity", "font-size", "font", "color", "background-color", "background",
    "width", "height", "max-width", "max-height", "overflow", "overflow-x", "overflow-y", "position", "left",
    "top", "right", "bottom", "text-indent", "clip", "clip-path", "transform", "content", "line-height",
})
# A box that far off the page is off-screen for any reader (the classic -9999px).
OFF_SCREEN_PX = -500.0
# At or below this font size text is a dot at most.
TINY_FONT_PX = 1.0
# Opacity at or below this is invisible.
FAINT_OPACITY = 0.05
# Text and background colours closer than this (sum of the channel differences, 0..765) read
# as one colour: #fff on #fefefe, #f9f9f9 on white.
COLOUR_CLOSE = 30

Declarations = tuple[tuple[str, str, bool], ...]  # (property, value as written lower-case, !important)


@dataclass(frozen=True, slots=True)
class Rule:
    selector: str  # a selector lexbor can match: one complex selector, pseudo-element removed
    specificity: tuple[int, int, int]
    order: int
    pseudo: str  # "" | "before" | "after"
    declarations: Declarations
    hides: bool  # its declarations alone can hide text (a box, visibility, size, a colour)


@dataclass(frozen=True, slots=True)
class Sheet:
    rules: tuple[Rule, ...]
    limit: str  # "" or what was left unread


def _declarations(tokens: list | str, only_relevant: bool = True) -> Declarations:
    out = []
    for decl in tinycss2.parse_blocks_contents(tokens, skip_whitespace=True, skip_comments=True):
        if decl.type != "declaration":
            continue
        name = decl.lower_name
        if only_relevant and name not in RELEVANT:
            continue
        value = tinycss2.serialize(decl.value).strip()
        out.append((name, value if name == "content" else value.lower(), bool(decl.important)))
    return tuple(out)


# A declaration list is "simple" when splitting it at semicolons and each piece at its first
# colon gives tinycss2's declarations: no comments, escapes, blocks or at-signs anywhere; quotes
# and brackets only balanced within a piece (so no semicolon hides inside one) and only in
# properties we do not keep; at most one !important, at a value's end. Anything else goes to
# tinycss2 (tested equal on every style attribute of the corpus and on generated ones:
# tests/core/test_render.py).
_NEVER_SIMPLE = frozenset("\\/{}@[]")
_ENCLOSING = frozenset("\"'()")
_IMPORTANT = "!important"


@lru_cache(maxsize=8192)
def inline_declarations(style: str) -> Declarations:
    """The relevant declarations of a style="..." attribute (cached: newsletters repeat them)."""
    simple = _simple_declarations(style)
    if simple is not None:
        return simple
    try:
        return _declarations(style)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - tinycss2 does not raise on bad CSS; defence in depth
        return ()


def _simple_declarations(style: str) -> Declarations | None:
    """tinycss2's reading of a simple declaration list (see above) at a fraction of its cost;
    None for anything else."""
    if any(c in _NEVER_SIMPLE for c in style):
        return None
    out = []
    for piece in style.split(";"):
        name, colon, value = piece.partition(":")
        name = name.strip(" \t\r\n\f")
        if not colon:
            if name:
                return None  # a piece without a colon: tinycss2's error recovery decides
            continue
        if not name or not _IDENT_NAME(name) or ":" in value:
            return None
        value = value.strip(" \t\r\n\f")
        important = False
        if "!" in value:
            head, bang, tail = value.rpartition("!")
            if tail.strip(" \t\r\n\f").lower() != "important" or "!" in head:
                return None
            value, important = head.rstrip(" \t\r\n\f"), True
        if not value or "  " in value or any(c in value for c in "\t\n\r\f"):
            return None  # whitespace runs inside a value: tinycss2 keeps them as written; one path
        lower = name.lower()
        enclosed = any(c in _ENCLOSING for c in value)
        if enclosed:
            if lower in RELEVANT or value.count("(") != value.count(")") or value.count("'") % 2 \
                    or value.count('"') % 2 or ("'" in value and '"' in value):
                return None
            continue  # a property we do not keep, whole within its piece
        if lower in RELEVANT:
            out.append((lower, value if lower == "content" else value.lower(), important))
    return tuple(out)


def _IDENT_NAME(name: str) -> bool:
    return name.replace("-", "a").isalnum() and name.isascii() and not name[0].isdigit() and not name.startswith("--")


@lru_cache(maxsize=8192)
def inline_computed(style: str) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The computed values a style attribute gives an element no rule matches (its last
    declaration of a property wins, an !important one over the others), and whether they hide
    it. Cached per string; the dict is shared: never modify it."""
    values: dict[str, tuple[bool, str]] = {}
    for name, value, important in inline_declarations(style):
        old = values.get(name)
        if old is None or important or not old[0]:
            values[name] = (important, value)
    computed = {k: v for k, (_, v) in values.items()}
    return computed, (hiding(computed) if computed else None)


def _can_hide(decls: Declarations) -> bool:
    """Can these declarations hide text by themselves: a hiding box or inherited value, or a
    text or background colour (judged against the page later)?"""
    computed = {name: value for name, value, _ in decls}
    return hiding(computed) is not None or any(n in computed for n in ("color", "background-color", "background"))


def _split_selectors(prelude: list) -> list[list]:
    """The complex selectors of a selector list, split at top-level commas."""
    parts: list[list] = [[]]
    for token in prelude:
        if token.type == "literal" and token.value == ",":
            parts.append([])
        else:
            parts[-1].append(token)
    return [p for p in parts if p]


def _without_pseudo_element(tokens: list) -> list:
    """The tokens before a trailing ::before / ::after (or :before, :after in CSS 2 syntax)."""
    toks = list(tokens)
    while toks and toks[-1].type == "whitespace":
        toks.pop()
    if len(toks) >= 2 and toks[-1].type == "ident" and toks[-2].type == "literal" and toks[-2].value == ":":
        cut = len(toks) - 2
        if cut >= 1 and toks[cut - 1].type == "literal" and toks[cut - 1].value == ":":
            cut -= 1
        toks = toks[:cut]
    return toks


def parse_sheet(css_texts: list[str], max_rules: int, max_chars: int) -> Sheet:
    """The qualified rules that set a relevant property, one Rule per complex selector, in order.
    Cached: a sender's mail carries the same style sheet every time (newsletters, notices)."""
    return _parse_sheet(tuple(css_texts), max_rules, max_chars)


@lru_cache(maxsize=256)
def _parse_sheet(css_texts: tuple[str, ...], max_rules: int, max_chars: int) -> Sheet:
    rules: list[Rule] = []
    limit = ""
    total = sum(len(t) for t in css_texts)
    text = "\n".join(css_texts)
    if total > max_chars:
        text = text[:max_chars]
        limit = f"style sheets of {total} characters: the first {max_chars} read"
    order = 0
    for rule in tinycss2.parse_stylesheet(text, skip_whitespace=True, skip_comments=True):
        if rule.type != "qualified-rule":
            continue  # @media, @font-face, @import...: conditional or irrelevant (see the module doc)
        decls = _declarations(rule.content)
        if not decls:
            continue
        for tokens in _split_selectors(rule.prelude):
            if len(rules) >= max_rules:
                return Sheet(rules=tuple(rules), limit=f"more than {max_rules} style rules: the first {max_rules} read")
            try:
                parsed = list(selector_parser.parse(tokens))
            except Exception:  # noqa: BLE001 - cssselect2.SelectorError, or recursion on a hostile chain
                continue
            if len(parsed) != 1:
                continue
            pseudo = parsed[0].pseudo_element or ""
            if pseudo not in ("", "before", "after"):
                continue  # ::selection, ::placeholder, ::-webkit-*: not the element's own text
            base = _without_pseudo_element(tokens) if pseudo else tokens
            selector = tinycss2.serialize(base).strip() or "*"
            order += 1
            rules.append(Rule(selector=selector, specificity=tuple(parsed[0].specificity), order=order,
                              pseudo=pseudo, declarations=decls, hides=_can_hide(decls)))
    return Sheet(rules=tuple(rules), limit=limit)


# --- values --------------------------------------------------------------------------------

_ABSOLUTE_PX = {"px": 1.0, "pt": 4 / 3, "pc": 16.0, "in": 96.0, "cm": 96 / 2.54, "mm": 96 / 25.4, "q": 96 / 101.6}
_RELATIVE_PX = {"em": 16.0, "rem": 16.0, "ex": 8.0, "ch": 8.0, "vw": 12.0, "vh": 8.0, "vmin": 8.0, "vmax": 12.0}
_FONT_KEYWORDS = {"xx-small": 9.0, "x-small": 10.0, "small": 13.0, "medium": 16.0, "large": 18.0,
                  "x-large": 24.0, "xx-large": 32.0, "smaller": 13.0, "larger": 19.0}


@lru_cache(maxsize=8192)
def _tokens(value: str) -> tuple:
    return tuple(t for t in tinycss2.parse_component_value_list(value, skip_comments=True) if t.type != "whitespace")


@lru_cache(maxsize=4096)
def length_px(value: str, percent_of: float = 16.0) -> float | None:
    """A length in CSS pixels (relative units at the 16px default), None when not one length."""
    toks = _tokens(value)
    if not toks:
        return None
    t = toks[0]
    if t.type == "number":
        return float(t.value)  # unitless: 0, or a quirks-mode pixel count
    if t.type == "percentage":
        return float(t.value) * percent_of / 100.0
    if t.type == "dimension":
        unit = t.lower_unit
        if unit in _ABSOLUTE_PX:
            return float(t.value) * _ABSOLUTE_PX[unit]
        if unit in _RELATIVE_PX:
            return float(t.value) * _RELATIVE_PX[unit]
    if t.type == "ident" and t.lower_value in _FONT_KEYWORDS:
        return _FONT_KEYWORDS[t.lower_value]
    return None


@lru_cache(maxsize=4096)
def font_shorthand_size(value: str) -> float | None:
    """The font-size inside a `font` shorthand ("0/0 a", "italic 1px Arial")."""
    for t in _tokens(value):
        if t.type in ("dimension", "percentage") or (t.type == "number" and t.value == 0):
            return length_px(tinycss2.serialize([t]))
        if t.type == "ident" and t.lower_value in _FONT_KEYWORDS:
            return _FONT_KEYWORDS[t.lower_value]
    return None


@lru_cache(maxsize=4096)
def colour(value: str) -> tuple[float, float, float, float] | None:
    """An RGBA colour (channels 0..255, alpha 0..1) from a CSS colour value or an HTML colour
    attribute ("#fff", "white", "rgb(...)", "transparent"); None for anything else."""
    toks = _tokens(value)
    if not toks:
        return None
    for t in toks:  # the `background` shorthand: its first colour
        try:
            c = tinycss2.color3.parse_color(t)
        except Exception:  # noqa: BLE001
            c = None
        if c is not None and c != "currentColor":
            return (c.red * 255, c.green * 255, c.blue * 255, c.alpha)
        if t.type == "ident" and len(t.value) in (3, 6) and all(ch in "0123456789abcdefABCDEF" for ch in t.value):
            n = t.value if len(t.value) == 6 else "".join(ch * 2 for ch in t.value)
            return (int(n[0:2], 16), int(n[2:4], 16), int(n[4:6], 16), 1.0)  # bgcolor="ffffff"
        if t.type == "url" or t.type == "function" and t.lower_name in ("url", "linear-gradient", "radial-gradient", "image-set"):
            return None  # an image under the text: its colour is unknown
    return None


def close(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) + abs(a[2] - b[2]) <= COLOUR_CLOSE


def number(value: str) -> float | None:
    toks = _tokens(value)
    if len(toks) == 1 and toks[0].type in ("number", "percentage"):
        return float(toks[0].value) / (100.0 if toks[0].type == "percentage" else 1.0)
    return None


def idents(value: str) -> list[str]:
    return [t.lower_value for t in _tokens(value) if t.type == "ident"]


def hiding(decls: dict[str, str]) -> tuple[str, str] | None:
    """See _hiding; cached on the declarations (newsletters repeat the same few styles)."""
    return _hiding(tuple(sorted(decls.items())))


@lru_cache(maxsize=8192)
def _hiding(items: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
    decls = dict(items)
    return _hiding_of(decls)


def _hiding_of(decls: dict[str, str]) -> tuple[str, str] | None:
    """Whether an element's own computed declarations hide it: ("box", why) when the element
    and all it holds are out of sight, ("inherited:<property>", why) when a descendant could
    set the property back (visibility, font-size), None when the element is visible."""
    get = decls.get
    if "none" in idents(get("display", "")):
        return "box", "display:none"
    opacity = number(get("opacity", "1"))
    if opacity is not None and opacity <= FAINT_OPACITY:
        return "box", "opacity:0"
    overflow = " ".join(idents(" ".join(get(p, "") for p in ("overflow", "overflow-x", "overflow-y"))))
    clipped = "hidden" in overflow or "clip" in overflow
    for prop in ("width", "height", "max-width", "max-height"):
        if prop in decls:
            size = length_px(decls[prop], 0.0)
            if size is not None and size <= 1.0 and clipped:
                return "box", f"{prop}:{decls[prop]} with overflow hidden"
    position = idents(get("position", ""))
    if "absolute" in position or "fixed" in position:
        for prop in ("left", "top", "right", "bottom"):
            if prop in decls and (px := length_px(decls[prop], 0.0)) is not None and px <= OFF_SCREEN_PX:
                return "box", f"positioned off-screen ({prop}:{decls[prop]})"
        if _zero_rect(get("clip", "")):
            return "box", "clip:rect(0 0 0 0)"
    if "text-indent" in decls and (px := length_px(decls["text-indent"], 0.0)) is not None and px <= OFF_SCREEN_PX:
        return "box", f"text-indent:{decls['text-indent']}"
    clip_path = get("clip-path", "")
    if clip_path.startswith(("inset(50%", "inset(100%", "circle(0", "polygon(0 0)")):
        return "box", f"clip-path:{clip_path}"
    transform = get("transform", "")
    if transform and any(transform.startswith(f"{f}(0") or f" {f}(0" in transform for f in ("scale", "scalex", "scaley")):
        if any(tok in transform for tok in ("(0)", "(0,", "(0 ", "(0.0)")):
            return "box", f"transform:{transform}"
    if "visibility" in decls and {"hidden", "collapse"} & set(idents(decls["visibility"])):
        return "inherited:visibility", "visibility:hidden"
    size = None
    if "font-size" in decls:
        size = length_px(decls["font-size"])
    elif "font" in decls:
        size = font_shorthand_size(decls["font"])
    if size is not None and size <= TINY_FONT_PX:
        return "inherited:font-size", f"font-size:{decls.get('font-size') or decls.get('font')}"
    return None


def _zero_rect(value: str) -> bool:
    toks = _tokens(value) if value.startswith("rect(") else []
    if not toks or toks[0].type != "function":
        return False
    args = [t for t in toks[0].arguments if t.type not in ("whitespace", "literal", "comment")]
    return bool(args) and all(t.type in ("number", "dimension") and t.value == 0 for t in args)


def shown_again(decls: dict[str, str], prop: str) -> bool:
    """Does a descendant's own declaration undo an inherited hiding of prop?"""
    if prop == "visibility":
        return "visible" in idents(decls.get("visibility", ""))
    if prop == "font-size":
        value = decls.get("font-size")
        if value is None:
            return False
        toks = _tokens(value)
        if toks and toks[0].type == "dimension" and toks[0].lower_unit in _ABSOLUTE_PX:
            return (length_px(value) or 0.0) > TINY_FONT_PX
        if toks and toks[0].type == "dimension" and toks[0].lower_unit == "rem":
            return (length_px(value) or 0.0) > TINY_FONT_PX
        return bool(toks) and toks[0].type == "ident" and toks[0].lower_value in _FONT_KEYWORDS
    if prop == "color":
        return "color" in decls or "background-color" in decls or "background" in decls
    return False


@lru_cache(maxsize=1024)
def generated_text(value: str) -> str:
    """The text of a `content` value: its strings (counters, attr() and images are not text)."""
    return "".join(t.value for t in _tokens(value) if t.type == "string")[:500]
