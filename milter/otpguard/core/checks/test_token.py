"""The test token: a body holding OTPGUARD-TEST-PHISH is phish, like SpamAssassin's GTUBE.

Admins prove the whole chain (Postfix -> milter -> verdict -> action -> quarantine -> metrics)
with one harmless message. The token is matched exactly, case-sensitive, in the visible body
text only (not the subject or headers, which anyone in a thread can quote), and nothing else
emits TEST_PHISH. Its weight ([scoring.weights] TEST_PHISH) sits far above the phish threshold.
"""
from __future__ import annotations

from typing import Iterable

from ..model import Hit
from .base import Context

TOKEN = "OTPGUARD-TEST-PHISH"


class PhishTestTokenCheck:
    name = "test_token"
    symbols = {"TEST_PHISH": f"the body holds the test token {TOKEN} (an admin's end-to-end test)"}

    def run(self, ctx: Context) -> Iterable[Hit]:
        if TOKEN in ctx.msg.text:
            yield Hit(symbol="TEST_PHISH", strength=1.0, reason=f"test token {TOKEN} in the body")
