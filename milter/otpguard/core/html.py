"""HTML as a mail client renders it: the text the reader sees, links and where they really go,
forms, images, the title; and the evidence of text hidden from filters but not from the reader.

Visibility follows the CSS cascade (core/css.py) over lexbor's tree: <style> rules by tag,
class, id and attribute, inline styles, presentational colours (bgcolor, <font color>), the
`hidden` attribute; hidden boxes (display:none, opacity:0, zero or 1-pixel clipped boxes,
off-screen positioning), inherited hiding a descendant may undo (visibility, font-size near
zero), text coloured like its background; ::before/::after content is text the reader sees;
ruby annotations (<rt>, <rp>) are not part of the words they sit on. CSS work is done only
where the message has style rules or style attributes: plain HTML costs lexbor's C walks.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from functools import lru_cache

from selectolax.lexbor import LexborHTMLParser as HTMLParser

from . import css
from .message import Form, Image, Link
from .urls import absolute_base, refresh_target, resolve, script_targets

_BLOCKS = ("p,div,br,td,th,tr,li,h1,h2,h3,h4,h5,h6,table,blockquote,section,article,header,footer,"
           "ul,ol,dd,dt,center,hr,title,form,option")
_BLOCK_TAGS = frozenset(_BLOCKS.split(","))
_INLINE_DISPLAYS = frozenset({"inline", "inline-block", "inline-flex", "inline-grid", "inline-table", "contents"})
_BLOCK_DISPLAYS = frozenset({"block", "flex", "grid", "table", "list-item", "table-row", "table-cell", "flow-root"})
# What the visibility pass asks lexbor for in one walk: everything that may carry style.
_STYLED = "[style],[hidden],rt,rp,font[color],[bgcolor]"
# Markers left where hidden text was, to see afterwards whether it sat inside a word.
# Noncharacters (Unicode 15, 23.7): never interchanged, removed from the input first.
HIDDEN_MARK, RUBY_MARK, GENERATED_MARK = "\ufdd0", "\ufdd1", "\ufdd2"
_MARKS_RE = re.compile("[\ufdd0-\ufdd2]")
_NO_MARKS = str.maketrans("", "", "\ufdd0\ufdd1\ufdd2")
_HIDING_MARKS_RE = re.compile("[\ufdd0\ufdd1]")
_GENERATED_RE = re.compile("\ufdd2([^\ufdd2]*)\ufdd2")
_WHITE = (255.0, 255.0, 255.0, 1.0)
MAX_IMAGES = 200
MAX_DATA_PICTURES = 8
MAX_DATA_URI_CHARS = 3_000_000
MAX_CONDITIONAL_COMMENTS = 50
MAX_CSS_RULES = 2000
MAX_CSS_CHARS = 400_000
MAX_CSS_MATCHES = 200_000
MAX_INLINE_HTML = 4_000_000
_STYLE_TAG = re.compile(r"<style", re.I)


@dataclass(slots=True)
class Html:
    text: str
    links: list[Link]
    forms: list[Form]
    images: list[Image] = field(default_factory=list)
    title: str = ""
    obfuscation: list[str] = field(default_factory=list)
    limits: list[str] = field(default_factory=list)
    pictures: list[bytes] = field(default_factory=list)  # data: URI images, for QR decoding


class _Styles:
    """Computed values of the relevant properties for the elements that have any."""

    def __init__(self) -> None:
        # mem_id -> (node, property -> (precedence key, value))
        self.nodes: dict[int, tuple[object, dict[str, tuple[tuple, str]]]] = {}

    def add(self, node, decls, key_of) -> None:
        entry = self.nodes.get(node.mem_id)
        if entry is None:
            entry = self.nodes[node.mem_id] = (node, {})
        props = entry[1]
        for name, value, important in decls:
            key = key_of(important)
            old = props.get(name)
            if old is None or key >= old[0]:
                props[name] = (key, value)

    def computed(self, mem_id: int) -> dict[str, str]:
        entry = self.nodes.get(mem_id)
        return {k: v for k, (_, v) in entry[1].items()} if entry else {}


def parse_html(html: str, max_links: int, *, page: bool = False) -> Html:
    """Visible text, links (as a browser resolves them), forms, images, title, evidence.

    page: the HTML is a document the reader opens in a browser (an attachment), where scripts
    run: their redirect targets are links too."""
    if _MARKS_RE.search(html):
        html = html.translate(_NO_MARKS)
    inlined = False
    if _STYLE_TAG.search(html) is not None:
        # Style sheets applied by css-inline (Servo's CSS parser and selector engine, in Rust):
        # every rule that applies to an element lands in its style attribute, by the cascade
        # (specificity, order, !important); @media and dynamic pseudo-classes stay out. The
        # rest of the reading then sees inline styles only.
        styled = _inline_sheets(html)
        if styled is not None:
            html, inlined = styled, True
    tree = HTMLParser(html)
    out = Html(text="", links=[], forms=[])
    title = tree.css_first("title")
    out.title = " ".join(title.text(deep=True).split())[:500] if title is not None else ""
    base_node = tree.css_first("base[href]")
    base = absolute_base(base_node.attributes.get("href") or "") if base_node is not None else ""
    links = out.links

    def link(href: str | None, text: str, source: str) -> None:
        if href and len(links) < max_links:
            links.append(Link(href=resolve(href, base), text=text[:500], source=source))

    # One C walk for what sends the browser elsewhere or styles the page.
    sheets: list[str] = []
    for node in tree.css("meta[http-equiv],[onclick],style,script,[formaction]"):
        tag = node.tag
        attrs = node.attributes
        if tag == "style":
            sheets.append(node.text(deep=True))
        elif tag == "meta" and (attrs.get("http-equiv") or "").strip().lower() == "refresh":
            link(refresh_target(attrs.get("content") or ""), "", "meta-refresh")
        elif tag == "script" and page:
            for target in script_targets(node.text(deep=True), 10):
                link(target, "", "script")
        if "onclick" in attrs:
            for target in script_targets(attrs.get("onclick") or "", 3):
                link(target, "", "script")
        if "formaction" in attrs:
            link(attrs.get("formaction"), "", "form")
    tree.strip_tags(["script", "style", "noscript", "template", "head"])

    display = _hide(tree, sheets, out, inlined)

    for node in tree.css("a, area[href]"):
        if len(links) >= max_links:
            break
        attrs = node.attributes
        href = (attrs.get("href") or attrs.get("xlink:href") or "").strip()  # SVG links: xlink:href
        if not href:
            continue
        text = node.text(deep=True, separator=" ", strip=True).translate(_NO_MARKS)
        if not text:
            img = node.css_first("img")
            if img is not None:
                text = img.attributes.get("alt") or ""
        link(href, text, "area" if node.tag == "area" else "html")
    if "[if" in html:
        _conditional_comment_links(html, link)
    for node in tree.css("form"):
        inputs = tuple((i.attributes.get("type") or "text").lower() for i in node.css("input"))
        out.forms.append(Form(action=resolve((node.attributes.get("action") or "").strip(), base),
                              has_password="password" in inputs, inputs=inputs[:50]))
        if node.attributes.get("action"):
            link(node.attributes["action"].strip(), "", "form")
    _images(tree, base, out)

    _line_breaks(tree, display)
    root = tree.body or tree.root
    text = root.text(separator="", strip=False) if root is not None else ""
    if _MARKS_RE.search(text):
        text = _evidence(text, out)
    out.text = text
    return out


def _inline_sheets(html: str) -> str | None:
    """html with its style sheets' rules in style attributes; None when css-inline cannot
    (then tinycss2 and lexbor apply the rules here, within MAX_CSS_RULES)."""
    if len(html) > MAX_INLINE_HTML:
        return None
    try:
        return _inliner().inline(html)
    except Exception:  # noqa: BLE001 - css_inline.InlineError, or a panic surfaced as an exception
        return None


@lru_cache(maxsize=1)
def _inliner():
    import css_inline

    # No remote style sheets (no network at run time); <style> kept for ::before/::after.
    return css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=True, keep_at_rules=True,
                                 keep_link_tags=True, cache=None)


def _hide(tree, sheets: list[str], out: Html, inlined: bool = False) -> dict[int, str]:
    """Replace what the reader cannot see by markers; insert ::before/::after text. Returns
    the CSS display of the elements that set one (mem_id -> value). inlined: the style
    sheets' rules are already in the style attributes (only ::before/::after are left)."""
    styles = _Styles()
    hidden_attr, ruby = [], []
    order = [0]
    root = tree.root
    if root is None:
        return {}
    rules: tuple[css.Rule, ...] = ()
    if any(s.strip() for s in sheets) and (not inlined or any(":before" in s or ":after" in s for s in sheets)):
        sheet = css.parse_sheet(sheets, MAX_CSS_RULES, MAX_CSS_CHARS)
        rules = tuple(r for r in sheet.rules if r.pseudo) if inlined else sheet.rules
        if sheet.limit and not inlined:
            out.limits.append(sheet.limit)
    generated: list[tuple[object, str, str]] = []
    matches = 0
    # Rules that can hide text (or colour it like a background) are matched first; the rest
    # (rules that may show it again) only when something was hidden (see below).
    rest = [r for r in rules if not r.hides and not r.pseudo]
    for rule in [r for r in rules if r.hides or r.pseudo]:
        try:
            nodes = root.css(rule.selector)
        except Exception:  # noqa: BLE001 - a selector lexbor does not support matches nothing
            continue
        matches += len(nodes)
        if matches > MAX_CSS_MATCHES:
            out.limits.append(f"style rules matched more than {MAX_CSS_MATCHES} elements: the rest not applied")
            break
        if rule.pseudo:
            text = next((css.generated_text(v) for n, v, _ in rule.declarations if n == "content"), "")
            if text:
                generated.extend((node, rule.pseudo, text) for node in nodes)
            continue
        key = rule.specificity + (rule.order,)
        for node in nodes:
            styles.add(node, rule.declarations, lambda imp, key=key: (imp, 0) + key)
    # Every element with a style attribute, presentational colours, `hidden` or ruby text, in
    # one C walk. Most have only inline styles: their computed values are the style string's
    # own (cached per string); the cascade runs only for elements a rule matched.
    entries: list[tuple[object, dict[str, str], tuple[str, str] | None]] = []
    for node in root.css(_STYLED):
        tag = node.tag
        if tag in ("rt", "rp"):
            ruby.append(node)
            continue
        attrs = node.attributes
        style = attrs.get("style")
        presentational = []
        if tag == "font" and attrs.get("color"):
            presentational.append(("color", attrs["color"].strip().lower(), False))
        if attrs.get("bgcolor"):
            presentational.append(("background-color", attrs["bgcolor"].strip().lower(), False))
        if "hidden" in attrs:
            hidden_attr.append(node)
        if not presentational and node.mem_id not in styles.nodes:
            if style:
                computed, found = css.inline_computed(style)
                if computed:
                    entries.append((node, computed, found))
            continue
        order[0] += 1
        if presentational:  # HTML presentational hints: below every author rule (CSS 2.1 6.4.4)
            styles.add(node, presentational, lambda imp: (False, -1, 0, 0, 0, 0))
        if style:
            decls = css.inline_declarations(style)
            if decls:
                styles.add(node, decls, lambda imp, o=order[0]: (imp, 1, 0, 0, 0, o))
    if rest and (hidden_attr or any(found for _, _, found in entries) or _any_hidden(styles, entries)):
        # Something may be hidden: the other rules take part in the cascade (a more specific
        # rule may show again what another hides).
        for rule in rest:
            try:
                nodes = root.css(rule.selector)
            except Exception:  # noqa: BLE001
                continue
            matches += len(nodes)
            if matches > MAX_CSS_MATCHES:
                out.limits.append(f"style rules matched more than {MAX_CSS_MATCHES} elements: the rest not applied")
                break
            key = rule.specificity + (rule.order,)
            for node in nodes:
                styles.add(node, rule.declarations, lambda imp, key=key: (imp, 0) + key)
        entries = [e for e in entries if e[0].mem_id not in styles.nodes]
        for node in root.css("[style]"):
            if node.mem_id in styles.nodes:
                style = node.attributes.get("style")
                decls = css.inline_declarations(style) if style else ()
                if decls:
                    styles.add(node, decls, lambda imp: (imp, 1, 0, 0, 0, 0))
    fast = {id(e[0]) for e in entries}
    for mem_id, (node, _) in styles.nodes.items():
        if id(node) not in fast:
            computed = styles.computed(mem_id)
            entries.append((node, computed, css.hiding(computed)))

    colours = _Colours(entries)
    targets: dict[int, tuple[object, str]] = {}
    inherited: list[tuple[object, str, str]] = []
    for node, computed, found in entries:
        if found is None and colours.may_hide(computed):
            found = _same_colour(node, computed, colours)
        if found is None:
            continue
        kind, why = found
        if kind == "box":
            targets[node.mem_id] = (node, why)
        else:
            inherited.append((node, kind.split(":", 1)[1], why))
    display = {node.mem_id: shown for node, computed, _ in entries if (shown := computed.get("display", ""))}
    for node in hidden_attr:
        shown = display.get(node.mem_id)
        if shown is None or "none" in shown:  # the UA sheet's [hidden]{display:none}
            targets[node.mem_id] = (node, "hidden attribute")
    undoers: dict[str, list] = {}
    above: dict[int, set[int]] = {}  # an undoer's ancestors, walked once
    for node, prop, why in inherited:
        if prop not in undoers:
            undoers[prop] = [n for n, computed, _ in entries if css.shown_again(computed, prop)]
            for n in undoers[prop]:
                if n.mem_id not in above:
                    above[n.mem_id] = _ancestors(n)
        undo = [n for n in undoers[prop] if n.mem_id != node.mem_id and node.mem_id in above[n.mem_id]]
        if not undo:
            targets[node.mem_id] = (node, why)
        else:
            _hide_text_outside(node, undo, targets, why)

    reasons: dict[str, int] = {}
    outer = [(n, why) for mid, (n, why) in targets.items() if not _has_ancestor_in(n, targets)]
    for node, pseudo, text in generated:
        if node.mem_id in targets or _has_ancestor_in(node, targets):
            continue
        piece = GENERATED_MARK + text + GENERATED_MARK
        if pseudo == "before":
            first = node.child
            if first is not None:
                first.insert_before(piece)
            else:
                node.insert_child(piece)
        else:
            node.insert_child(piece)
    for node, why in outer:
        reasons[why] = reasons.get(why, 0) + 1
        _replace(node, HIDDEN_MARK)
    for node in ruby:
        if node.mem_id in targets or _has_ancestor_in(node, targets):
            continue
        _replace(node, RUBY_MARK)
    out.obfuscation.extend(f"hidden: {why}" for why in sorted(reasons))  # refined by _evidence
    return display


def _any_hidden(styles: _Styles, entries) -> bool:
    """Do the rules matched so far hide anything (before the rules that may show it again)?"""
    colours = None
    for mem_id, (node, _) in styles.nodes.items():
        computed = styles.computed(mem_id)
        if css.hiding(computed) is not None:
            return True
        colours = colours or _Colours(entries + [(n, styles.computed(m), None) for m, (n, _) in styles.nodes.items()])
        if colours.may_hide(computed) and _same_colour(node, computed, colours) is not None:
            return True
    return False


def _replace(node, marker: str) -> None:
    if node.text(deep=True).strip():
        node.replace_with(marker)
    else:
        node.decompose()


def _ancestors(node) -> set[int]:
    found: set[int] = set()
    parent = node.parent
    while parent is not None and len(found) < 512:
        found.add(parent.mem_id)
        parent = parent.parent
    return found


def _has_ancestor_in(node, targets: dict) -> bool:
    parent = node.parent
    depth = 0
    while parent is not None and depth < 512:
        if parent.mem_id in targets:
            return True
        parent = parent.parent
        depth += 1
    return False


def _hide_text_outside(node, undo: list, targets: dict, why: str) -> None:
    """An inherited hiding that descendants undo: the text nodes outside those descendants."""
    keep = {n.mem_id for n in undo}
    for text_node in node.traverse(include_text=True):
        if not text_node.is_text_node or not (text_node.text_content or "").strip():
            continue
        parent, shown = text_node.parent, False
        while parent is not None and parent.mem_id != node.mem_id:
            if parent.mem_id in keep:
                shown = True
                break
            parent = parent.parent
        if not shown:
            targets[text_node.mem_id] = (text_node, why)


class _Colours:
    """Text and background colours declared in the document, by element: a colour can only
    hide text where a background close to it is declared (or the white page under it)."""

    def __init__(self, entries) -> None:
        self.fg: dict[int, str] = {}
        self.bg: dict[int, str] = {}
        backgrounds = {_WHITE}
        foregrounds = set()
        for node, computed, _ in entries:
            if (c := computed.get("color")) is not None:
                self.fg[node.mem_id] = c
                if (rgba := css.colour(c)) is not None:
                    foregrounds.add(rgba)
            b = computed.get("background-color") or computed.get("background")
            if b is not None:
                self.bg[node.mem_id] = b
                if (rgba := css.colour(b)) is not None:
                    backgrounds.add(rgba)
        self.backgrounds = backgrounds
        self.foregrounds = foregrounds

    def may_hide(self, computed: dict[str, str]) -> bool:
        fg = computed.get("color")
        if fg is not None:
            rgba = css.colour(fg)
            return rgba is not None and (rgba[3] <= css.FAINT_OPACITY or any(css.close(rgba, b) for b in self.backgrounds))
        bg = computed.get("background-color") or computed.get("background")
        if bg is not None:
            rgba = css.colour(bg)
            return rgba is not None and any(css.close(f, rgba) for f in self.foregrounds)
        return False

    def inherited(self, node, table: dict[int, str], default):
        depth = 0
        while node is not None and depth < 512:
            value = table.get(node.mem_id)
            if value is not None:
                return css.colour(value)
            node = node.parent
            depth += 1
        return default


def _same_colour(node, computed: dict[str, str], colours: _Colours) -> tuple[str, str] | None:
    """Text coloured like the background under it (or transparent): inherited hiding."""
    own_fg = computed.get("color")
    own_bg = computed.get("background-color") or computed.get("background")
    if own_fg is None and own_bg is None:
        return None
    # A background under the default text colour is not judged: the default (black) is the
    # least sure guess (a client's dark mode, a colour set where we do not look).
    fg = css.colour(own_fg) if own_fg is not None else colours.inherited(node.parent, colours.fg, None)
    if fg is None:
        return None
    if fg[3] <= css.FAINT_OPACITY:
        return "inherited:color", "transparent text"
    bg = css.colour(own_bg) if own_bg is not None else colours.inherited(node.parent, colours.bg, _WHITE)
    if bg is None or bg[3] < 1.0:
        return None  # an image or a translucent layer: the colour under the text is unknown
    if css.close(fg, bg):
        return "inherited:color", "text in the colour of its background"
    return None


def _line_breaks(tree, display: dict[int, str]) -> None:
    """Block elements end a line; inline ones do not, so "Ama<span>zon</span>" stays one word.
    CSS display changes which is which (a div made inline splits no word)."""
    for node in tree.css(_BLOCKS):
        shown = display.get(node.mem_id, "")
        if shown and css.idents(shown) and css.idents(shown)[0] in _INLINE_DISPLAYS:
            continue
        node.insert_after("\n")
    if display:
        for node in tree.css("[style]"):
            shown = display.get(node.mem_id, "")
            if node.tag not in _BLOCK_TAGS and shown and css.idents(shown)[:1] and css.idents(shown)[0] in _BLOCK_DISPLAYS:
                node.insert_after("\n")


def _images(tree, base: str, out: Html) -> None:
    linked = {node.mem_id for node in tree.css("a[href] img, a[href] input[type=image]")}
    for node in tree.css("img, input[type=image]"):
        if len(out.images) >= MAX_IMAGES:
            out.limits.append(f"more than {MAX_IMAGES} images: the rest not listed")
            break
        attrs = node.attributes
        href = ""
        if node.mem_id in linked:  # an image button: the link it sits in
            parent, depth = node.parent, 0
            while parent is not None and depth < 64:
                if parent.tag == "a":
                    href = resolve((parent.attributes.get("href") or "").strip(), base)
                    break
                parent, depth = parent.parent, depth + 1
        src = (attrs.get("src") or "").strip()
        if src[:11].lower() == "data:image/" and len(out.pictures) < MAX_DATA_PICTURES:
            picture = _data_uri(src)
            if picture:
                out.pictures.append(picture)
            src = src[:40]
        # The source as written (resolved only under a <base href>): a picture is not a link.
        out.images.append(Image(src=(resolve(src, base) if base else src)[:2000], alt=(attrs.get("alt") or "")[:500],
                                title=(attrs.get("title") or "")[:500], href=href[:2000], source="html"))


def _data_uri(src: str) -> bytes:
    """The bytes of a base64 data: URI (RFC 2397), at most MAX_DATA_URI_CHARS of it."""
    head, _, data = src.partition(",")
    if ";base64" not in head.lower() or len(data) > MAX_DATA_URI_CHARS:
        return b""
    try:
        return base64.b64decode("".join(data.split()) + "=" * (-len(data) % 4), validate=False)
    except (binascii.Error, ValueError):
        return b""


_CONDITIONAL = re.compile(r"<!--\[if[^\]]*\]>(.*?)<!\[endif\]-->", re.S | re.I)


def _conditional_comment_links(html: str, link) -> None:
    """Outlook reads what sits in <!--[if mso]>...<![endif]--> comments, other readers do not
    see it: VML buttons (<v:roundrect href=...>) are links for Outlook's readers."""
    for i, m in enumerate(_CONDITIONAL.finditer(html)):
        if i >= MAX_CONDITIONAL_COMMENTS:
            break
        chunk = m.group(1)
        if "href" not in chunk.lower():
            continue
        for node in HTMLParser(chunk).css("[href]"):
            tag = node.tag or ""
            text = node.text(deep=True, separator=" ", strip=True)
            link((node.attributes.get("href") or "").strip(), text, "vml" if tag.startswith("v:") else "html")


def _evidence(text: str, out: Html) -> str:
    """Count hidden and generated text that sat inside a word, then remove the markers."""
    hidden_in_word = ruby_in_word = generated_in_word = 0
    for m in _HIDING_MARKS_RE.finditer(text):
        i = m.start()
        before = _neighbour(text, i - 1, -1)
        after = _neighbour(text, i + 1, 1)
        if text[i] == HIDDEN_MARK:
            hidden_in_word += before.isalpha() and after.isalpha()
        else:  # furigana count only inside Latin words: Japanese ruby is ordinary
            ruby_in_word += before.isascii() and after.isascii() and before.isalpha() and after.isalpha()
    # Generated text between its two marks, glued to a letter on either side.
    for m in _GENERATED_RE.finditer(text):
        inner = m.group(1)
        if not inner:
            continue
        before = _neighbour(text, m.start() - 1, -1)
        after = _neighbour(text, m.end(), 1)
        generated_in_word += (before.isalpha() and inner[0].isalpha()) or (after.isalpha() and inner[-1].isalpha())
    kept = [r for r in out.obfuscation if not r.startswith("hidden: ")]
    reasons = [r[len("hidden: "):] for r in out.obfuscation if r.startswith("hidden: ")]
    if hidden_in_word:
        kept.append(f"text hidden inside {hidden_in_word} word(s) ({', '.join(reasons[:3])})")
    if ruby_in_word:
        kept.append(f"ruby annotations inside {ruby_in_word} Latin word(s)")
    if generated_in_word:
        kept.append(f"CSS-generated text inside {generated_in_word} word(s)")
    out.obfuscation[:] = kept
    return text.translate(_NO_MARKS)


def _neighbour(text: str, i: int, step: int) -> str:
    """The nearest character that is not a marker, from i in direction step ('' at the ends)."""
    while 0 <= i < len(text):
        if text[i] not in (HIDDEN_MARK, RUBY_MARK, GENERATED_MARK):
            return text[i]
        i += step
    return ""
