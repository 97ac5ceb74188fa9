"""Lures: security codes, sign-in alerts, resets, locked accounts, payments, prizes, urgency."""
from __future__ import annotations

import re
from typing import Iterable

from ..model import Hit
from ..vocabulary import CODE_TOKEN
from .base import Context

SYMBOL_OF_KIND = {
    "otp": "OTP_LURE", "signin": "SIGNIN_LURE", "reset": "RESET_LURE", "locked": "ACCOUNT_LOCKED_LURE",
    "payment": "PAYMENT_LURE", "verify": "VERIFY_LURE", "prize": "PRIZE_LURE", "urgency": "URGENCY",
    "dispute": "ORDER_DISPUTE_LURE",
}
# Kinds that make a mail a "code mail" (counted for bursts when genuine).
CODE_KINDS = ("otp", "signin", "reset")


class LureCheck:
    name = "lures"
    symbols = {
        "OTP_LURE": "security code, verification code, one-time password or PIN",
        "SIGNIN_LURE": "sign-in attempt, unusual activity or new device",
        "RESET_LURE": "password reset or change",
        "ACCOUNT_LOCKED_LURE": "account locked, suspended or on hold",
        "PAYMENT_LURE": "failed payment or billing update",
        "VERIFY_LURE": "verify or confirm the account, identity or details",
        "PRIZE_LURE": "gift card, voucher, prize or reward",
        "URGENCY": "pressure to act now",
        "ORDER_DISPUTE_LURE": "an order or charge the reader did not make (refund and callback scams)",
        "CODE_TOKEN": "a code-like number next to security-code words",
        "LURE_IN_ATTACHMENT": "the lure is in an attachment (PDF, HTML, DOCX, RTF)",
    }

    def run(self, ctx: Context) -> Iterable[Hit]:
        if ctx.from_owned and ctx.brand_signed:
            # The brand's own signed mail says exactly these words: here they prove nothing,
            # and whether the signature holds is the authentication check's business.
            return
        places = ctx.lure_places
        for kind, where in ctx.lures.items():
            only_attachment = places[kind] == {"attachment"}
            yield Hit(symbol=SYMBOL_OF_KIND[kind], strength=0.8 if only_attachment else 1.0, reason=where)
        if "otp" in ctx.lures:
            token = code_near_words(ctx)
            if token:
                yield Hit(symbol="CODE_TOKEN", strength=1.0, reason=f"code {token}")
        att_kinds = [k for k, p in places.items() if "attachment" in p and k != "urgency"]
        if att_kinds and ctx.msg.attachments:
            names = ", ".join(sorted({a.filename or a.content_type for a in ctx.msg.attachments}))[:80]
            yield Hit(symbol="LURE_IN_ATTACHMENT", strength=1.0, reason=f"{'/'.join(att_kinds)} in {names}")


def code_near_words(ctx: Context) -> str | None:
    """A code-like token within 120 characters of security-code words."""
    from .base import lure_patterns

    otp = lure_patterns(ctx.brand).get("otp")
    if otp is None:
        return None
    for text in (ctx.subject_clean, ctx.body_clean):
        for m in otp.finditer(text):
            window = text[max(0, m.start() - 120): m.end() + 120]
            t = CODE_TOKEN.search(window)
            if t and not re.fullmatch(r"(?:19|20)\d\d", t.group(0)):
                return t.group(0)
    return None
