"""What every check sees: one message's facts, normalised once, and the brand claim."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Iterable, Protocol

from ..brand import BrandProfile
from ..domains import Lookalike, lookalike
from ..model import AuthSummary, Envelope, Hit
from ..normalize import clean, fold_lookalike, skeleton
from ..message import Address, ParsedMessage
from ..vocabulary import LURES, Phrases, compile_kind


# Lure kinds that want something from the reader (prizes and urgency alone do not).
CREDENTIAL_KINDS = ("otp", "signin", "reset", "locked", "payment", "verify", "dispute")


class Check(Protocol):
    """A check names its symbols and yields hits; it never scores or acts."""

    name: str
    symbols: dict[str, str]  # symbol -> one-line description

    def run(self, ctx: "Context") -> Iterable[Hit]: ...


@dataclass(slots=True)
class Claim:
    """Where a message claims to be the brand: strong places name it as the sender."""

    strong: list[str] = field(default_factory=list)
    weak: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.strong or self.weak)


_LURE_PATTERNS: dict[tuple[str, tuple[str, ...]], Phrases] = {}


class BrandMatcher:
    """Finds brand names in normalised text: a substring test first, the word-bounded regex after."""

    def __init__(self, names: tuple[str, ...]) -> None:
        forms = sorted({fold_lookalike(skeleton(clean(n))) for n in names}, key=len, reverse=True)
        # Every longer name contains a shorter one ("amazon.co.jp" holds "amazon"): testing the
        # shortest forms as plain substrings rules out nearly all mail at C speed.
        self.anchors = tuple(f for f in forms if not any(o != f and o in f for o in forms))
        alts = [rf"(?<![a-z]){re.escape(f)}(?![a-rt-z])" if f.isascii() else re.escape(f) for f in forms]
        self.pattern = re.compile("|".join(alts))  # "amazons" and "amazon.co.jp" match, "amazonia" not

    def search(self, text: str) -> re.Match[str] | None:
        if not any(a in text for a in self.anchors):
            return None
        return self.pattern.search(text)

    def findall(self, text: str) -> list[str]:
        if not any(a in text for a in self.anchors):
            return []
        return self.pattern.findall(text)


@lru_cache(maxsize=64)
def brand_pattern(names: tuple[str, ...]) -> BrandMatcher:
    """The matcher of a brand's names (built once per name list)."""
    return BrandMatcher(names)


@lru_cache(maxsize=64)
def product_pattern(products: tuple[str, ...]) -> re.Pattern[str] | None:
    """Product names ("Prime", "Kindle") as whole words; None when the profile has none."""
    if not products:
        return None
    return re.compile("|".join(rf"(?<![a-z]){re.escape(skeleton(clean(p)))}(?![a-z])" for p in products))


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
    def product_re(self) -> re.Pattern[str] | None:
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
        c = Claim()
        if self.from_owned:
            c.strong.append("from-domain")
        if any(self.brand.owns(a.domain) for a in self.msg.reply_to):
            c.strong.append("reply-to-domain")
        if self.names_brand(self.display_clean):
            c.strong.append("display-name")
        if self.names_brand(self.subject_clean):
            c.strong.append("subject")
        locals_ = " ".join(a.local for a in self.msg.from_ + self.msg.reply_to if not self.brand.owns(a.domain))
        folded_locals = self.folded(clean(locals_)) if locals_ else ""
        if folded_locals and any(stem in folded_locals for stem in self.brand.stems):
            c.strong.append("sender-address")
        if self.sender_lookalikes:
            c.strong.append("lookalike-domain")
        body_named = self.mentions_brand(self.body_clean) or self.mentions_brand(self.attachment_clean)
        if body_named:
            if self.addresses_customer(self.body_clean) or self.addresses_customer(self.attachment_clean):
                c.strong.append("customer-address")
            else:
                c.weak.append("body")
        if not c.strong and (self.names_product(self.display_clean) or self.names_product(self.subject_clean)):
            # "Prime" alone is an English word; beside the brand in the body or a lure it is a claim.
            if body_named or self.lures:
                c.strong.append("product-name")
        return c
