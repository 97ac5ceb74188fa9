"""The claim: every place a message speaks as the brand, and how strongly.

- identity: the sender is named as the brand (display name, a brand From or Reply-To domain,
  a lookalike domain, the brand in a foreign address's local part, the From of a forwarded
  or attached inner message);
- speech: the body speaks as the brand (its signature or team line, its copyright line, its
  logo, the page title);
- medium: the brand is the topic (the subject, "your Amazon account", a product name beside
  a lure, an inner message's subject);
- weak: the brand is mentioned in passing.

Identity and speech are what the reader takes as "this mail is from Amazon"; who can truly be
Amazon is decided elsewhere (authentication), and impersonation is that claim from a sender who
cannot be the brand, asking for something (checks/impersonation.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from ..domains import lookalike, osa_distance
from ..normalize import clean, fold_lookalike, skeleton

if TYPE_CHECKING:
    from .base import BrandMatcher, Context


@dataclass(slots=True)
class Claim:
    """Where a message claims to be the brand, by tier (see the module doc)."""

    identity: list[str] = field(default_factory=list)
    speech: list[str] = field(default_factory=list)
    medium: list[str] = field(default_factory=list)
    weak: list[str] = field(default_factory=list)

    @property
    def strong(self) -> list[str]:
        """Every place that makes the brand more than a passing mention."""
        return self.identity + self.speech + self.medium

    @property
    def speaks_as_brand(self) -> bool:
        """The sender or the body presents itself as the brand."""
        return bool(self.identity or self.speech)

    @property
    def any(self) -> bool:
        return bool(self.identity or self.speech or self.medium or self.weak)

    @property
    def places(self) -> list[str]:
        return self.identity + self.speech + self.medium + self.weak


# A team or service line next to the brand's name: how brands sign their mail, in the eight
# languages (either order: "Amazon Customer Service", "L'équipe Amazon", "Das Amazon-Team").
_TEAM = (r"customer service|customer support|support team|service team|account team|security team|team"
         r"|カスタマーサービス|カスタマーサポート|カスタマーセンター|サポート|チーム|事務局|お客様センター"
         r"|service client|équipe|kundenservice|kundendienst|kundensupport|servicio al cliente|atención al cliente"
         r"|equipo|servizio clienti|assistenza clienti|atendimento ao cliente|atendimento|equipe|客服|客户服务|客戶服務"
         r"|团队|團隊")
_COPYRIGHT = r"©|\(c\)|copyright|all rights reserved|tous droits réservés|alle rechte vorbehalten" \
             r"|todos los derechos reservados|tutti i diritti riservati|todos os direitos reservados|無断転載|版权所有|版權所有"
_LOCAL_TOKEN = re.compile(r"[a-z0-9]+")
# A forward's subject prefix in the usual clients' languages (Fwd, FW, TR, WG, RV, I, Enc, 転送, 转发).
_FORWARD_SUBJECT = re.compile(r"\s*(?:re\s*:\s*)*(?:fwd?|tr|wg|rv|enc|i|fs|vs|doorst|転送|转发|轉寄)\s*[:：]", re.I)


@lru_cache(maxsize=8)
def _speech_patterns(names: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    alts = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    brand = rf"(?<![a-z])(?:{alts})(?![a-rt-z])"
    team = re.compile(rf"{brand}(?:[ \-.,]|\.[a-z]{{2,3}}){{0,3}}(?:[\w.]+ ){{0,1}}(?:{_TEAM})"
                      rf"|(?:{_TEAM})(?: de| von| di| da| do| del)?(?: l'| la| das| el| il)? ?-?{brand}")
    copyright_ = re.compile(rf"(?:{_COPYRIGHT})[^\n]{{0,40}}?{brand}|{brand}[^\n]{{0,40}}?(?:{_COPYRIGHT})")
    return team, copyright_


def find_claim(ctx: "Context") -> Claim:
    c = Claim()
    brand = ctx.brand
    msg = ctx.msg
    # --- identity: who the sender says it is
    if ctx.from_owned:
        c.identity.append("from-domain")
    if any(brand.owns(a.domain) for a in msg.reply_to):
        c.identity.append("reply-to-domain")
    if ctx.names_brand(ctx.display_clean):
        c.identity.append("display-name")
    elif ctx.names_product(ctx.display_clean) and (ctx.lures or ctx.mentions_brand(ctx.body_clean)
                                                   or ctx.names_brand(ctx.subject_clean)):
        # "Prime" alone is an English word; a display name "Prime Video" beside the brand or a
        # lure names the brand's product as the sender.
        c.identity.append("product-name")
    if _brand_in_local_part(ctx):
        c.identity.append("sender-address")
    if ctx.sender_lookalikes:
        c.identity.append("lookalike-domain")
    if _inner_from_claims(ctx):
        c.identity.append("inner-from")
    # --- speech: the body presents itself as the brand
    # Speech and mentions in the body need one of the brand's forms in its text: most mail has
    # none, which a test on the raw text tells for ASCII text (no cleaning needed).
    named = ctx.text_may_name_brand
    body = ctx.body_folded_head if named else ""
    # Both patterns need one of the brand's forms: a substring test first (C, a few forms) spares
    # mail that never names the brand their alternations, tried at every position of its text.
    if body and any(form in body for form in ctx.brand_forms):
        team, copyright_ = _speech_patterns(ctx.brand_forms)
        if team.search(body):
            c.speech.append("signature")
        if copyright_.search(body):
            c.speech.append("copyright")
    if any(_is_logo(ctx, i.alt) or _is_logo(ctx, i.title) or _is_logo(ctx, _file_words(i.src))
           for i in msg.images[:50]):
        c.speech.append("logo")
    if msg.title and ctx.names_brand(clean(msg.title)):
        c.speech.append("title")
    # --- the subject: the brand speaking ("Your Amazon account...", "... from Amazon Prime")
    # or the brand as the topic
    subject = ctx.subject_clean
    forwarded = _FORWARD_SUBJECT.match(subject) is not None  # the subject quotes another message's
    if ctx.names_brand(subject):
        if not forwarded and (ctx.addresses_customer(subject) or _from_brand(ctx, subject)):
            c.speech.append("subject")
        else:
            c.medium.append("subject")
    elif not forwarded and ctx.names_product(subject) and _from_brand(ctx, subject, products=True):
        c.speech.append("subject")
    for inner in msg.inner_messages[:5]:
        sub = clean(inner.subject)
        # The forwarded message's own subject speaks as the brand as its subject did.
        if ctx.names_brand(sub):
            speaks = ctx.addresses_customer(sub) or _from_brand(ctx, sub)
            (c.speech if speaks else c.medium).append("inner-subject")
            break
        if ctx.names_product(sub) and _from_brand(ctx, sub, products=True):
            c.speech.append("inner-subject")
            break
    body_named = named and (ctx.mentions_brand(ctx.body_clean) or ctx.mentions_brand(ctx.attachment_clean))
    if body_named:
        if ctx.addresses_customer(ctx.body_clean) or ctx.addresses_customer(ctx.attachment_clean):
            c.medium.append("customer-address")
        elif not c.speech:
            c.weak.append("body")
    if not c.strong and ctx.names_product(ctx.subject_clean) and (body_named or ctx.lures):
        c.medium.append("product-name")
    return c


# "... from Amazon", "Amazonからのお知らせ": the text says the brand is the sender.
_FROM_WORDS = r"(?:\bfrom|\bvon|de la part d'|de la part de|de parte de|\bby|来自|來自)"


@lru_cache(maxsize=8)
def _from_pattern(forms: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(f) for f in forms)
    brand = rf"(?<![a-z])(?:{alts})(?![a-rt-z])"
    return re.compile(rf"{_FROM_WORDS} ?(?:the )?(?:{brand})|(?:{brand})[\w .-]{{0,12}}?(?:から|より)")


def _from_brand(ctx: "Context", text: str, products: bool = False) -> bool:
    """The text says the brand sends it: "... from Amazon", "Amazonからのお知らせ", or a subject
    that opens with the brand as its speaker ("Amazon: ...", "【Amazon】...", "[Amazon.co.jp] ...")."""
    forms = ctx.brand_forms + (tuple(skeleton(clean(p)) for p in ctx.brand.products) if products else ())
    folded = skeleton(text)
    return _from_pattern(forms).search(folded) is not None or _speaker_pattern(forms).match(folded) is not None


@lru_cache(maxsize=8)
def _speaker_pattern(forms: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(re.escape(f) for f in forms)
    brand = rf"(?:{alts})(?![a-rt-z])[\w.]{{0,6}}"
    return re.compile(rf"\s*(?:(?:re|fw|fwd|tr|wg|aw|rv|sv)\s*:\s*)*(?:[【\[(「]\s*{brand}\s*[】\])」]|{brand}\s*[:：|｜\-–—])")


# Words a logo's name may hold beside the brand ("Amazon logo", "amazon-jp-logo.png").
_LOGO_WORDS = frozenset({"logo", "the", "jp", "co", "com", "de", "fr", "uk", "new", "img", "image", "png", "gif", "jpg",
                         "jpeg", "svg", "webp", "header", "top", "small", "large", "white", "black", "email", "mail"})
_NAME_WORDS = re.compile(r"[^\W\d_]+")


def _file_words(src: str) -> str:
    return src.rsplit("/", 1)[-1].split("?", 1)[0].replace("_", " ").replace("-", " ").replace(".", " ")


def _is_logo(ctx: "Context", name: str) -> bool:
    """An image named as the brand's logo: the brand's name and at most two other words. An ad
    or badge that mentions the brand ("In association with Amazon.com") is not its logo."""
    return bool(name) and _logo_name(name, ctx.brand_re)


@lru_cache(maxsize=4096)
def _logo_name(name: str, matcher: "BrandMatcher") -> bool:
    # Per name and brand (one matcher per brand's names): the same images (a shop's logo, a
    # tracking pixel) recur mail after mail.
    folded = fold_lookalike(skeleton(clean(name)))  # as Context.folded reads a name
    if not matcher.search(folded):
        return False
    rest = matcher.pattern.sub(" ", folded)
    others = [w for w in _NAME_WORDS.findall(rest) if w not in _LOGO_WORDS]
    return len(others) <= 2


def _brand_in_local_part(ctx: "Context") -> bool:
    """The brand in a foreign address's local part: support-amazon@x, arnazon-jp@x (a one-letter
    change of a stem counts too: the reader sees the brand)."""
    stems = ctx.folded_stems
    return any(_local_names_stem(a.local, stems) for a in ctx.msg.from_ + ctx.msg.reply_to
               if a.local and not ctx.brand.owns(a.domain) and not ctx.brand.sends_from(a.domain))


@lru_cache(maxsize=4096)
def _local_names_stem(local: str, stems: tuple[str, ...]) -> bool:
    # Per local part: the same senders (no-reply, info, newsletter) write mail after mail.
    folded = fold_lookalike(skeleton(clean(local)))
    if any(stem in folded for stem in stems):
        return True
    for token in _LOCAL_TOKEN.findall(folded):
        # One edit apart: lengths differ by one at most (checked before the distance itself).
        if len(token) >= 5 and any(len(s) >= 5 and abs(len(s) - len(token)) <= 1 and osa_distance(token, s, 1) <= 1
                                   for s in stems):
            return True
    return False


def _inner_from_claims(ctx: "Context") -> bool:
    """A forwarded or attached message whose own From names the brand or one of its domains."""
    brand = ctx.brand
    for inner in ctx.msg.inner_messages[:5]:
        for a in inner.from_:
            display = clean(a.display)
            if brand.owns(a.domain) or ctx.names_brand(display) or ctx.names_product(display) \
                    or (a.domain and lookalike(a.domain, brand) is not None):
                return True
    return False
