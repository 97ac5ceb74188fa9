"""What every check sees: one message's facts, normalised once, and the brand claim."""
from __future__ import annotations

import re
import unicodedata
from functools import cached_property, lru_cache
from typing import Iterable, Protocol

from ..brand import BrandProfile
from ..domains import Lookalike, lookalike, registered_domain
from ..intent import intents
from ..model import AuthSummary, Envelope, Hit
from ..normalize import clean, fold_lookalike, may_hold, shortest_forms, skeleton
from ..headerfields import split_address
from ..message import Address, ParsedMessage
from ..vocabulary import LURES, Phrases, compile_kind
from .action import CallToAction, calls_to_action, list_links
from .claim import Claim, find_claim


# Lure kinds that want something from the reader (prizes and urgency alone do not).
CREDENTIAL_KINDS = ("otp", "signin", "reset", "locked", "payment", "verify", "dispute")


class Check(Protocol):
    """A check names its symbols and yields hits; it never scores or acts."""

    name: str
    symbols: dict[str, str]  # symbol -> one-line description

    def run(self, ctx: "Context") -> Iterable[Hit]: ...


_LURE_PATTERNS: dict[tuple[str, tuple[str, ...]], Phrases] = {}


class Anchored:
    """Finds forms in normalised text: a substring test of the shortest forms first (C speed,
    rules out nearly all mail), the word-bounded regex of all of them after."""

    def __init__(self, forms: list[str], alternatives: list[str]) -> None:
        self.anchors = shortest_forms(forms)
        self.pattern = re.compile("|".join(alternatives))

    def search(self, text: str) -> re.Match[str] | None:
        if not any(a in text for a in self.anchors):
            return None
        return self.pattern.search(text)

    def findall(self, text: str) -> list[str]:
        if not any(a in text for a in self.anchors):
            return []
        return self.pattern.findall(text)


class BrandMatcher(Anchored):
    """A brand's names: "amazons" and "amazon.co.jp" match, "amazonia" not."""

    def __init__(self, names: tuple[str, ...]) -> None:
        forms = sorted({fold_lookalike(skeleton(clean(n))) for n in names}, key=len, reverse=True)
        super().__init__(forms, [rf"(?<![a-z]){re.escape(f)}(?![a-rt-z])" if f.isascii() else re.escape(f)
                                 for f in forms])


# Forms of a brand's names and stems: the same for every message, so computed once per brand.
@lru_cache(maxsize=16)
def _brand_forms(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted({skeleton(clean(n)) for n in names}, key=len, reverse=True))


@lru_cache(maxsize=16)
def _folded_stems(stems: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(fold_lookalike(skeleton(s)) for s in stems)


@lru_cache(maxsize=64)
def brand_pattern(names: tuple[str, ...]) -> BrandMatcher:
    """The matcher of a brand's names (built once per name list)."""
    return BrandMatcher(names)


class ProductMatcher(Anchored):
    """A brand's product names ("Prime", "Kindle") as whole words."""

    def __init__(self, products: tuple[str, ...]) -> None:
        forms = [skeleton(clean(p)) for p in products]
        super().__init__(forms, [rf"(?<![a-z]){re.escape(f)}(?![a-z])" for f in forms])


@lru_cache(maxsize=64)
def product_pattern(products: tuple[str, ...]) -> ProductMatcher | None:
    """Product names ("Prime", "Kindle") as whole words; None when the profile has none."""
    if not products:
        return None
    return ProductMatcher(products)


@lru_cache(maxsize=64)
def customer_pattern(names: tuple[str, ...]) -> Phrases:
    """The text speaks to the reader as the brand's customer: "your Amazon account"."""
    alts = "|".join(re.escape(fold_lookalike(skeleton(clean(n)))) for n in names)
    return Phrases(re.compile(
        rf"(?:\byour|\bvotre|\bvos|\bihre?[nmrs]?|\bdein(?:e[nmrs]?)?|\bsu|\btu|\bsus|\btus|\bil tuo|\bla tua|\bsua|\bseu"
        rf"|お客様の|あなたの|您的) ?(?:compte |cuenta (?:de )?|conta (?:da )?|account )?(?:{alts})(?![a-rt-z])"))


def lure_patterns(brand: BrandProfile) -> dict[str, Phrases]:
    """Compiled vocabulary per lure kind for this brand (core sets plus the profile's phrases)."""
    out = {}
    for kind in brand.lure_sets:
        extra = brand.extra_lures.get(kind, ())
        key = (kind, extra)
        pat = _LURE_PATTERNS.get(key)
        if pat is None:
            pat = _LURE_PATTERNS[key] = compile_kind(LURES.get(kind, []) + [re.escape(clean(p)) for p in extra])
        out[kind] = pat
    return out


class Context:
    """One message as the checks see it. Normalised forms are computed on first use only."""

    def __init__(self, msg: ParsedMessage, envelope: Envelope, brand: BrandProfile,
                 auth: AuthSummary | None, max_links: int = 2000) -> None:
        self.msg, self.envelope, self.brand, self.auth, self.max_links = msg, envelope, brand, auth, max_links
        self.genuine = False
        # authserv-ids of trusted upstream Authentication-Results found below the trust boundary
        # (forgeries, not believed): set by the engine, reported by the authentication check.
        self.forged_results: tuple[str, ...] = ()

    # --- addresses
    @cached_property
    def from_addr(self) -> Address | None:
        return next((a for a in self.msg.from_ if a.domain), self.msg.from_[0] if self.msg.from_ else None)

    @cached_property
    def from_domain(self) -> str:
        return self.from_addr.domain if self.from_addr else ""

    @cached_property
    def from_owned(self) -> bool:
        return self.brand.owns(self.from_domain)

    @cached_property
    def brand_signed(self) -> bool:
        """A brand domain's DKIM signature that verified: by our own check, or a trusted
        upstream's dkim=pass. A DKIM-Signature header nobody verified proves nothing: anyone
        can write one (offline scans, verify = false, a prefix of a large message, an
        upstream result without a DKIM entry)."""
        auth = self.auth
        return auth is not None and any(self.brand.owns(d.domain) and d.result == "pass" for d in auth.dkim)

    @cached_property
    def brand_signature_header(self) -> str | None:
        """The d= of a DKIM-Signature header naming a brand domain, verified or not."""
        return next((d for d in self.msg.dkim_domains if self.brand.owns(d)), None)

    # --- normalised text
    @cached_property
    def display_clean(self) -> str:
        return clean(" ".join(a.display for a in self.msg.from_))

    @cached_property
    def subject_clean(self) -> str:
        return clean(self.msg.subject)

    @cached_property
    def body_clean(self) -> str:
        return clean(self.msg.text)

    @cached_property
    def attachment_clean(self) -> str:
        return clean(self.msg.attachment_text)

    @staticmethod
    def folded(text: str) -> str:
        return fold_lookalike(skeleton(text))

    @cached_property
    def brand_re(self) -> BrandMatcher:
        return brand_pattern(self.brand.names)

    @cached_property
    def product_re(self) -> ProductMatcher | None:
        return product_pattern(self.brand.products)

    def names_brand(self, cleaned: str) -> bool:
        return bool(cleaned) and bool(self.brand_re.search(self.folded(cleaned)))

    def mentions_brand(self, cleaned: str) -> bool:
        """Body text: homoglyphs folded, but not ASCII digit/letter-pair lookalikes (costly on long text)."""
        return bool(cleaned) and bool(self.brand_re.search(skeleton(cleaned)))

    def names_product(self, cleaned: str) -> bool:
        return bool(cleaned) and self.product_re is not None and bool(self.product_re.search(skeleton(cleaned)))

    @cached_property
    def customer_re(self) -> Phrases:
        return customer_pattern(self.brand.names + self.brand.products)

    def addresses_customer(self, cleaned: str) -> bool:
        return bool(cleaned) and bool(self.customer_re.search(self.folded(cleaned)))

    @staticmethod
    def plain(text: str) -> str:
        """NFKC and case folding only: invisible characters and homoglyphs left in place."""
        return unicodedata.normalize("NFKC", text).casefold()

    # --- lures
    @cached_property
    def lures(self) -> dict[str, str]:
        """Lure kinds found -> where first found (subject, body, attachment, display)."""
        found: dict[str, str] = {}
        places = (("subject", self.subject_clean), ("display", self.display_clean),
                  ("body", self.body_clean), ("attachment", self.attachment_clean))
        for kind, pattern in lure_patterns(self.brand).items():
            for where, text in places:
                if text and (m := pattern.search(text)):
                    found[kind] = f"{where}: {m.group(0)[:40]!r}"
                    break
        # The same intents in other words: concepts that occur together (intent.py).
        missing = tuple(k for k in self.brand.lure_sets if k not in found)
        if missing:
            for where, text in places:
                for it in intents(text, missing) if text else ():
                    if it.kind not in found:
                        found[it.kind] = f"{where}: {it.evidence}"[:80]
        return found

    @cached_property
    def credential_lures(self) -> list[str]:
        """Lure kinds that ask for credentials, codes, payment details or a call."""
        return [k for k in self.lures if k in CREDENTIAL_KINDS]

    @cached_property
    def lure_places(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for kind, where in self.lures.items():
            out.setdefault(kind, set()).add(where.split(":", 1)[0])
        return out

    @cached_property
    def sender_lookalikes(self) -> list[Lookalike]:
        seen, out = set(), []
        addrs = list(self.msg.from_ + self.msg.reply_to) + [a for a in (self.msg.sender, self.msg.return_path) if a]
        for a in addrs:
            if a.domain and a.domain not in seen:
                seen.add(a.domain)
                if (hit := lookalike(a.domain, self.brand)) is not None:
                    out.append(hit)
        return out

    # --- the claim
    @cached_property
    def claim(self) -> Claim:
        return find_claim(self)

    @property
    def brand_forms(self) -> tuple[str, ...]:
        """The brand's names as body text is searched (confusables folded to a skeleton)."""
        return _brand_forms(self.brand.names)

    @property
    def folded_stems(self) -> tuple[str, ...]:
        """The brand's stems as sender addresses are compared (skeleton, lookalikes folded)."""
        return _folded_stems(self.brand.stems)

    @cached_property
    def text_may_name_brand(self) -> bool:
        """Could the body or the attachments' text name the brand once read (normalize.may_hold)?
        Most mail never does: its text is then not cleaned for the claim at all."""
        forms = self.brand_forms + self.brand_re.anchors
        return may_hold(self.msg.text, forms) or may_hold(self.msg.attachment_text, forms)

    @cached_property
    def body_folded_head(self) -> str:
        """Where a brand signs its mail: the first and the last lines of the body and of the
        attachments' text (a PDF "statement" signs as the brand as a body does), on the skeleton."""
        parts = []
        for text in (self.body_clean, self.attachment_clean):
            if len(text) > _SPEECH_HEAD + _SPEECH_TAIL:
                text = text[:_SPEECH_HEAD] + "\n" + text[-_SPEECH_TAIL:]
            parts.append(text)
        return skeleton("\n".join(p for p in parts if p))

    # --- what the message asks the reader to do
    @cached_property
    def actions(self) -> list[CallToAction]:
        return calls_to_action(self)

    @cached_property
    def warns_about_fraud(self) -> bool:
        """The text is about phishing or fraud (an awareness newsletter, a bank's warning)."""
        return bool(_FRAUD_WORDS.search(self.subject_clean) or _FRAUD_WORDS.search(self.body_clean[:_SPEECH_HEAD]))

    # --- relays: who wrote the message when someone else sent it
    @cached_property
    def relay(self) -> tuple[str, Address] | None:
        """("list", author) for a list copy whose From the list rewrote (DMARC mitigation, as
        Mailman and Google Groups do: the author moves to X-Original-From or Reply-To);
        ("forward", inner From) for a forwarded message whose outer sender does not itself
        claim the brand; None for a message its From wrote."""
        msg = self.msg
        if msg.header("list-id") or msg.header("list-post"):
            display = " ".join(a.display for a in msg.from_).lower()
            original = split_address(msg.header("x-original-from") or "")
            author = next((Address(display=d, addr=a, local=a.rpartition("@")[0], domain=a.rpartition("@")[2].lower())
                           for d, a in original if "@" in a), None) or next(iter(msg.reply_to), None)
            # Rewritten: "Name via List", an X-Original-From, or a From at the list's own domain.
            rewritten = " via " in display or bool(original) or \
                registered_domain(self.from_domain) in list_links(self)[0]
            if author is not None and author.domain and rewritten and author.domain != self.from_domain:
                return "list", author
        if msg.inner_messages:
            outer = self.names_brand(self.display_clean) or self.from_owned or bool(self.sender_lookalikes)
            inner = next((a for m in msg.inner_messages for a in m.from_ if a.domain), None)
            if inner is not None and not outer:
                return "forward", inner
        return None

    @cached_property
    def author(self) -> Address | None:
        """Who wrote the message: the list copy's original author, else the From address. (A
        forward's inner author is judged by the pipeline, not by the trace of this message.)"""
        relay = self.relay
        return relay[1] if relay is not None and relay[0] == "list" else self.from_addr

    @cached_property
    def callback_number(self) -> str | None:
        from .phones import callback_number  # phones imports this module

        return callback_number(self)


_SPEECH_HEAD = 20_000
# Words of a text about phishing itself (awareness newsletters, a bank's warning), in the eight languages.
_FRAUD_WORDS = re.compile(
    r"phishing|\bscam|fraud alert|fake (?:e-?mail|message|website)|spoof|hameçonnage|arnaque|escroquerie"
    r"|betrug|betrüger|gefälscht|estafa|suplantación|truffa|frode|golpe|詐欺|フィッシング|なりすまし|偽の?(?:メール|サイト)"
    r"|诈骗|詐騙|钓鱼|釣魚")
_SPEECH_TAIL = 5_000
