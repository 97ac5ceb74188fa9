"""Other words for the same lure: per-language paraphrases and synonyms for "the code".

A phisher who rewrites "verify your account" as "validate your profile", or calls the code a
承認コード, 確認番号 or "authorization code", asks for the same thing. The replacement lists are
written from language knowledge (how each language says these things), not from the corpus:
each maps a common way of saying it to a less common one a filter may not know.
"""
from __future__ import annotations

import random
import re

from . import transform
from .messages import edit_text, set_header, subject_of

# (pattern, replacement) per language; patterns are case-insensitive, replacements keep meaning.
PARAPHRASES: dict[str, list[tuple[str, str]]] = {
    "en": [
        (r"\bverify your account\b", "validate your profile"), (r"\bconfirm your identity\b", "prove it is really you"),
        (r"\bsign[- ]?in\b", "log on"), (r"\blog ?in\b", "log on"), (r"\bsuspended\b", "put on hold"),
        (r"\blocked\b", "frozen"), (r"\bunusual activity\b", "activity we did not expect"),
        (r"\bsuspicious\b", "irregular"), (r"\bpayment method\b", "billing card"), (r"\bupdate\b", "refresh"),
        (r"\bimmediately\b", "right away"), (r"\bwithin 24 hours\b", "before tomorrow"),
        (r"\bpassword\b", "passphrase"), (r"\bunauthori[sz]ed\b", "unapproved"),
    ],
    "ja": [
        (r"アカウント", "ご利用アカウント"), (r"ログイン", "サインイン"), (r"停止", "一時凍結"), (r"ロック", "凍結"),
        (r"不正", "不審"), (r"更新", "再登録"), (r"お支払い方法", "決済手段"), (r"支払", "決済"),
        (r"24時間以内", "本日中"), (r"パスワード", "暗証番号"), (r"確認してください", "ご確認をお願いします"),
    ],
    "fr": [
        (r"vérifier votre compte", "valider votre espace client"), (r"compte", "espace client"),
        (r"suspendu", "mis en pause"), (r"bloqué", "gelé"), (r"connexion", "authentification"),
        (r"mot de passe", "code secret"), (r"mettre à jour", "actualiser"), (r"paiement", "règlement"),
    ],
    "de": [
        (r"Konto", "Kundenkonto"), (r"gesperrt", "eingefroren"), (r"bestätigen", "verifizieren"),
        (r"Anmeldung", "Einloggen"), (r"Zahlungsmethode", "Zahlungsart"), (r"aktualisieren", "auf den neuesten Stand bringen"),
        (r"Passwort", "Kennwort"), (r"verdächtig", "ungewöhnlich"),
    ],
    "es": [
        (r"cuenta", "perfil de cliente"), (r"suspendida", "en pausa"), (r"bloqueada", "congelada"),
        (r"verificar", "validar"), (r"contraseña", "clave de acceso"), (r"pago", "cobro"),
    ],
    "it": [
        (r"account", "profilo cliente"), (r"sospeso", "messo in pausa"), (r"bloccato", "congelato"),
        (r"verificare", "convalidare"), (r"pagamento", "addebito"),
    ],
    "pt": [
        (r"conta", "cadastro"), (r"suspensa", "em pausa"), (r"bloqueada", "congelada"),
        (r"verificar", "validar"), (r"senha", "palavra-passe"), (r"pagamento", "cobrança"),
    ],
    "zh": [
        (r"账户", "账号"), (r"帳戶", "帳號"), (r"冻结", "暂停使用"), (r"验证", "核实"), (r"登录", "登入"),
        (r"付款", "支付"),
    ],
}
# What the code is called, and other names for it.
CODE_SYNONYMS: list[tuple[str, str]] = [
    (r"\b(?:security|verification|one[- ]time|login|sign[- ]in) code\b", "authorization code"),
    (r"\bone[- ]time password\b", "single-use passcode"), (r"\bOTP\b", "access number"),
    (r"セキュリティコード|認証コード|確認コード", "承認コード"), (r"ワンタイムパスワード", "確認番号"),
    (r"code de (?:vérification|sécurité)", "code d'authentification"),
    (r"(?:Sicherheits|Bestätigungs|Verifizierungs)-?[Cc]ode", "Freigabecode"),
    (r"código de (?:seguridad|verificación)", "código de autorización"),
    (r"codice di (?:sicurezza|verifica)", "codice di autorizzazione"),
    (r"código de (?:segurança|verificação)", "código de autorização"),
    (r"验证码|驗證碼", "动态码"),
    (r"(?<![\w-])(?:code|PIN)(?![\w-])", "access number"), (r"(?<!承認)(?<!ン)コード", "番号"),
    (r"暗証番号", "確認番号"), (r"\bpasscode\b", "access number"),
]


def _rewrite(table: list[tuple[str, str]]):
    compiled = [(re.compile(p, re.I), r) for p, r in table]

    def apply(text: str) -> str:
        for pattern, replacement in compiled:
            text = pattern.sub(replacement, text)
        return text
    return apply


def _everywhere(raw: bytes, fn) -> bytes | None:
    subject = subject_of(raw)
    out = edit_text(raw, plain=fn, html=fn)
    new_subject = fn(subject)
    if new_subject != subject:
        out = set_header(out if out is not None else raw, "Subject", new_subject)
    return out


_ALL = _rewrite([pair for pairs in PARAPHRASES.values() for pair in pairs])
_CODES = _rewrite(CODE_SYNONYMS)


@transform("paraphrase")
def paraphrase(raw: bytes, rng: random.Random) -> bytes | None:
    """The lure said in other words in its own language (ja, en, fr, de, es, it, pt, zh)."""
    return _everywhere(raw, _ALL)


@transform("code-synonyms")
def code_synonyms(raw: bytes, rng: random.Random) -> bytes | None:
    """The code called by another name: 承認コード, 確認番号, "authorization code", Freigabecode..."""
    return _everywhere(raw, _CODES)
