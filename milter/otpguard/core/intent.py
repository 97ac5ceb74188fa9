"""Lure intent that survives paraphrase: what the text wants, from concepts that occur together.

A lure says what is at stake (the account, a code, a password, a payment, an order) and what
the reader must do or fear (sign in, verify, "someone else", "suspended", "failed", "not
you?"). Phrase lists match one wording; here each concept is a set of word stems per language,
and an intent is two concepts within a window of text: "承認コード" and "確認番号" carry the
"code" concept (コード, 番号) like "verification code" does, and "your sign-in from an unknown
device" pairs "sign in" with "unknown" like "unusual sign-in activity" does.

Stems are written from language knowledge and Amazon's own descriptions of its messages
(ja, en, fr, de, es, it, pt, zh; a little nl and pl), never copied from a sample. Text is
`normalize.clean` text: NFKC, case folded, invisible characters out. Latin stems match at the
start of a word (inflections follow); CJK stems match anywhere (no spaces to anchor on).
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import lru_cache

from .vocabulary import CODE_TOKEN

# Latin-script stems (matched at a word start) and CJK stems (matched anywhere), per concept.
CONCEPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # What is at stake.
    "account": ((
        "account", "profile", "membership", "member=", "compte", "profil", "abonnement", "konto", "kundenkonto",
        "mitgliedschaft", "benutzerkonto", "cuenta", "membresía", "perfil", "conto=", "abbonamento", "iscrizione",
        "conta=", "assinatura", "cadastro", "rekening", "konto",
    ), (
        "アカウント", "会員", "ご登録", "登録情報", "お客様情報", "アカウント情報", "账户", "帐户", "賬戶", "帳戶", "账号",
        "帐号", "會員", "会员",
    )),
    "code": ((
        "code=",  # not after the words in NOT_AFTER: a promotion's code, a post code, a QR or source code
        "access number", "security number", "verification number", "one-time number", "pin number",
        "pin=", "pins=", "otp=", "passcode", "pass code", "one-time", "one time", "onetime", "2fa=", "mfa=",
        "tan=", "mtan=", "einmalcode", "einmalpasswort", "sicherheitscode", "bestätigungscode", "prüfcode",
        "kennzahl", "código", "clave=", "codice", "kod=", "token=",
    ), (
        # "番号" only as a code (確認番号, 認証番号...), not an order or phone number; "コード" not a coupon's
        "確認番号", "認証番号", "承認番号", "暗証番号", "照合番号", "セキュリティ番号", "ワンタイム番号", "本人確認用番号",
        "コード",
        "ワンタイム", "パスコード", "暗証", "验证码", "驗證碼", "校验码", "动态码", "动态密码", "安全码",
        "安全碼", "确认码", "確認碼", "口令",
    )),
    "secret": ((
        "password", "passwort", "kennwort", "credential", "login details", "sign-in details", "mot de passe",
        "identifiant", "zugangsdaten", "contraseña", "credencial", "senha", "wachtwoord", "hasło",
    ), (
        "パスワード", "暗証番号", "ログイン情報", "認証情報", "密码", "密碼",
    )),
    "payment": ((
        "payment", "billing", "card=", "cards=", "credit card", "debit", "bank=", "banking", "invoice", "charge", "paiement", "facturation",
        "carte=", "bancaire", "prélèvement", "zahlung", "bezahl", "rechnung", "karte=", "kreditkarte", "lastschrift",
        "abbuchung", "zahlungsmethode", "pago", "factura", "tarjeta", "cobro", "bancari", "pagamento", "fattura",
        "carta=", "addebito", "fatura", "cartão", "cobrança", "betaling", "płatnoś",
    ), (
        "支払", "お支払い", "決済", "請求", "カード", "クレジット", "口座", "料金", "引き落とし", "支付", "付款", "账单",
        "賬單", "信用卡", "银行卡", "扣款",
    )),
    "order": ((
        "order", "purchase", "transaction", "subscription", "renewal", "commande", "achat", "bestellung", "kauf=",
        "transaktion", "pedido", "compra", "transacción", "suscripción", "ordine", "acquisto", "transazione",
        "transação", "bestelling",
    ), (
        "注文", "購入", "取引", "定期購読", "订单", "訂單", "购买", "購買", "交易",
    )),
    "identity": ((
        "identity", "information", "details", "personal", "identité", "informations", "coordonnées", "données",
        "identität", "daten", "angaben", "informationen", "identidad", "datos=", "información", "identità", "dati=",
        "informazioni", "identidade", "dados=", "informações", "gegevens",
    ), (
        "本人", "身元", "個人情報", "ご本人", "身份", "信息", "資料", "资料",
    )),
    "reward": ((
        "gift card", "giftcard", "voucher", "reward", "prize", "winner", "won=", "congratulation", "bonus",
        "carte cadeau", "carte-cadeau", "récompense", "gagn", "félicitation", "gutschein", "gewonnen", "gewinn",
        "belohnung", "prämie", "tarjeta regalo", "premio", "ganad", "recompensa", "buono", "vinto", "ricompensa",
        "vale-presente", "prêmio", "ganhou",
    ), (
        "ギフト券", "ギフトカード", "当選", "特典", "賞品", "プレゼント", "礼品卡", "禮品卡", "奖励", "獎勵", "中奖", "中獎",
        "奖品",
    )),
    # What the reader is asked to do, or made to fear.
    "access": ((
        "sign in", "sign-in", "signin", "signed in", "log in", "log-in", "login", "logged in", "logon", "access",
        "connexion", "connecter", "connectez", "anmeld", "einlogg", "login", "inicio de sesión", "iniciar sesión",
        "acceso", "acced", "accesso", "accedi", "acesso", "acessar", "entrar", "inloggen", "logowan",
    ), (
        "ログイン", "サインイン", "アクセス", "登录", "登入", "登陆", "登錄",
    )),
    "anomaly": ((
        "unusual", "suspicious", "unrecogni", "unknown", "unauthori", "new device", "another device",
        "different device", "someone", "somebody", "irregular", "strange", "fraudulent", "third party", "third-party",
        "inhabituel", "suspect", "non autoris", "inconnu", "nouvel appareil", "quelqu'un", "frauduleu",
        "ungewöhnlich", "verdächtig", "unbefugt", "unbekannt", "neues gerät", "jemand", "betrügerisch",
        "inusual", "sospechos", "no autorizad", "desconocid", "nuevo dispositivo", "alguien", "fraudulent",
        "insolit", "sospett", "non autorizzat", "sconosciut", "nuovo dispositivo", "qualcuno", "fraudolent",
        "incomum", "suspeit", "não autorizad", "desconhecid", "novo dispositivo", "alguém", "onbekend", "verdacht",
        "podejrzan", "nieautoryzowan",
    ), (
        "不審", "不正", "異常", "第三者", "心当たり", "身に覚え", "新しい端末", "新しいデバイス", "別の端末", "見慣れない",
        "普段と異なる", "异常", "可疑", "未经授权", "未經授權", "陌生", "新设备", "新設備", "他人",
    )),
    "restrict": ((
        "suspend", "lock", "restrict", "limit", "disable", "deactivat", "on hold", "hold on", "closed", "closure",
        "terminat", "block", "freez", "frozen", "interrupt", "suspendu", "suspension", "bloqu",
        "verrouill", "restreint", "limité", "désactiv", "fermé", "fermeture", "résili", "gesperrt", "sperrung",
        "eingeschränkt", "deaktiv", "gekündigt", "blockiert", "ausgesetzt", "eingefroren", "suspendid",
        "restringid", "limitad", "desactivad", "cerrad", "sospes", "bloccat", "limitat", "disattivat", "chius",
        "suspens", "restrit", "desativad", "encerrad", "geblokkeerd", "zablokowan",
    ), (
        "停止", "制限", "ロック", "凍結", "無効", "利用できな", "ご利用いただけな", "保留", "解約", "閉鎖", "暂停", "暫停",
        "冻结", "锁定", "鎖定", "限制", "停用", "关闭", "關閉",
    )),
    "failure": ((
        "fail", "declin", "unsuccessful", "could not be", "couldn't be", "unable to", "expired", "invalid",
        "problem", "issue=", "échou", "échec", "refusé", "impossible", "expiré", "invalide", "problème",
        "fehlgeschlagen", "abgelehnt", "nicht möglich", "nicht durchgeführt", "ungültig", "abgelaufen",
        "fallid", "rechazad", "no se pudo", "no ha sido posible", "caducad", "inválid", "problema",
        "non riuscit", "non è riuscit", "buon fine", "rifiutat", "non è stato possibile", "scadut", "non valid", "falhou", "recusad",
        "não foi possível", "expirad", "mislukt", "nieudan",
    ), (
        "できません", "できませんでした", "失敗", "承認されませんでした", "期限切れ", "有効期限", "不備", "失败", "失敗",
        "被拒", "无法", "無法", "过期", "過期", "问题", "問題",
    )),
    "verify": ((
        "verif", "confirm", "validat", "update", "re-enter", "reenter", "reactivat", "restore", "unlock",
        "secure your", "vérifi", "confirmer", "confirmez", "valider", "mettre à jour", "mise à jour", "réactiv",
        "rétabl", "débloqu", "bestätig", "verifizier", "überprüf", "aktualisier", "validier", "reaktivier",
        "wiederherstell", "entsperr", "verific", "confirm", "valid", "actualiz", "reactiv", "restablec",
        "desbloque", "conferm", "convalid", "aggiorn", "riattiv", "ripristin", "sblocc", "atualiz", "reativ",
        "restabelec", "bevestig", "controleer", "weryfik", "potwierd",
    ), (
        "確認", "認証", "更新", "再登録", "解除", "復旧", "証明", "验证", "驗證", "确认", "核实", "核實",
    )),
    "change": ((
        "reset", "change", "changed", "recover", "réinitialis", "modifi", "changer", "zurücksetz", "geändert",
        "änder", "restablecer", "cambi", "reimpost", "redefin", "alterar", "alterad",
    ), (
        "再設定", "変更", "リセット", "重置", "更改", "修改", "变更",
    )),
    "repudiate": ((
        "not you", "wasn't you", "was not you", "did not", "didn't", "do not recogni", "don't recogni",
        "not authori", "not request", "not make", "not place", "pas vous", "n'avez pas", "n'êtes pas",
        "pas à l'origine", "nicht sie", "nicht von ihnen", "nicht getätigt", "nicht veranlasst", "nicht erkennen",
        "no fue usted", "no ha realizado", "no reconoce", "no realizó", "non sei stato", "non hai effettuato",
        "non riconosci", "não foi você", "não reconhece", "não realizou",
    ), (
        "心当たり", "身に覚え", "ご本人でない", "ご自身でない", "お客様ご自身によるものでない", "不是您", "非本人", "并非您",
        "並非您",
    )),
    "cancel": ((
        "cancel", "refund", "dispute", "report", "annul", "rembours", "contest", "stornier", "rückerstatt",
        "widerruf", "reembols", "disputa", "rimbors", "contesta", "estorn",
    ), (
        "キャンセル", "取り消", "返金", "取消", "退款",
    )),
    "enter": ((
        "enter", "type in", "input", "provide", "share", "submit", "eingeben", "angeben", "mitteilen", "saisi",
        "indiquer", "indiquez", "communiquer", "introduc", "ingres", "proporcion", "inserisci", "inserire",
        "immetti", "digite", "informe", "insira", "invoer",
    ), (
        "入力", "送信", "お知らせください", "教え", "输入", "輸入", "提供", "告诉",
    )),
    "urgent": ((
        "immediately", "urgent", "as soon as possible", "right away", "final notice", "last chance",
        "failure to", "otherwise=", "permanently", "within 24", "within 48", "within 72", "within 12",
        "immédiatement", "sans délai", "définitivement", "dans les 24", "dans les 48", "sofort=",
        "dringend", "umgehend", "endgültig", "andernfalls", "innerhalb von 24", "innerhalb von 48",
        "inmediatamente", "urgente=", "de lo contrario", "permanentemente", "immediatamente",
        "altrimenti", "definitivamente", "imediatamente", "caso contrário", "onmiddellijk", "natychmiast",
    ), (
        "以内", "至急", "緊急", "直ちに", "速やかに", "本日中", "永久", "早急", "小时内", "小時內", "立即", "立刻", "紧急",
        "尽快", "盡快", "否则", "否則", "永久",
    )),
}

CONCEPTS = {"code": CONCEPTS["code"], **{k: v for k, v in CONCEPTS.items() if k != "code"}}
# Words a stem must not follow to count: "promo code" and "QRコード" are not security codes.
NOT_AFTER: dict[str, tuple[str, ...]] = {
    "code": ("promo ", "promotional ", "discount ", "coupon ", "voucher ", "gift ", "zip ", "postal ", "post ",
             "source ", "qr ", "bar ", "country ", "area "),
    "コード": ("クーポン", "プロモーション", "割引", "qr", "バー", "郵便", "ソース"),
}

# An intent is two concepts within WINDOW characters of each other (either order), or one of
# several pairs. Kinds keep the names of the phrase vocabulary (vocabulary.LURES).
PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "otp": (("code", "enter"), ("code", "access"), ("code", "secret"), ("code", "anomaly")),
    "signin": (("access", "anomaly"), ("account", "anomaly")),
    "reset": (("secret", "change"), ("secret", "verify")),
    "locked": (("account", "restrict"), ("access", "restrict"), ("account", "cancel")),
    "payment": (("payment", "failure"), ("payment", "verify"), ("payment", "restrict")),
    "verify": (("verify", "account"), ("verify", "identity")),
    "dispute": (("order", "repudiate"), ("order", "anomaly"), ("payment", "repudiate")),
    "prize": (("reward", "verify"), ("reward", "access")),
}
WINDOW = 120
CODE_WINDOW = 80  # a code-shaped token this close to the "code" concept is the code itself
YEAR = re.compile(r"(?:19|20)\d\d")
SCAN_CHARS = 20_000  # of each text: lures sit at the top; hostile text costs a bounded scan


@dataclass(frozen=True, slots=True)
class Intent:
    kind: str
    evidence: str  # the two concept words found, e.g. "'承認コード' ~ '入力'"


@dataclass(frozen=True, slots=True)
class _Stem:
    text: str
    concept: str
    whole: bool  # a whole word (a plural s allowed), not the start of one


@dataclass(frozen=True, slots=True)
class _Index:
    """The stems by their first characters."""

    latin: dict[str, tuple[_Stem, ...]]  # first three characters -> stems, longest first
    cjk: dict[str, tuple[_Stem, ...]]  # first character -> stems, longest first
    cjk_starts: re.Pattern[str]  # any character a CJK stem starts with


@lru_cache(maxsize=1)
def _index() -> _Index:
    """Index the stems of CONCEPTS. A regex alternation of some 600 stems tries them one by one at
    every word; a dictionary keyed by a word's first characters tries the few that can match."""
    latin: dict[str, list[_Stem]] = {}
    cjk: dict[str, list[_Stem]] = {}
    for concept, (latin_stems, cjk_stems) in CONCEPTS.items():
        for stem in latin_stems + cjk_stems:
            whole = stem.endswith("=")
            body = stem.rstrip("=")
            if stem in cjk_stems:
                cjk.setdefault(body[0], []).append(_Stem(body, concept, False))
                continue
            # Spaces inside a Latin stem match one space or none ("sign in", "signin").
            for form in {body, body.replace(" ", "")}:
                latin.setdefault(form[:KEY], []).append(_Stem(form, concept, whole))
    by_length = lambda stems: tuple(sorted(stems, key=lambda x: -len(x.text)))  # noqa: E731
    starts = "".join(sorted(cjk))
    return _Index(latin={k: by_length(v) for k, v in latin.items()},
                  cjk={k: by_length(v) for k, v in cjk.items()},
                  cjk_starts=re.compile("[" + re.escape(starts) + "]"))


KEY = 3  # every Latin stem has at least three characters (checked by tests/core/test_intent.py)
_WORD = re.compile(r"\b[^\W_]")  # where a word starts (a letter or a digit after a non-word character)


def _excluded(text: str, pos: int, stem: str) -> bool:
    before = NOT_AFTER.get(stem)
    return before is not None and text[max(0, pos - 16):pos].endswith(before)


def _whole_end(text: str, end: int) -> bool:
    if end < len(text) and text[end] == "s":
        end += 1
    return end >= len(text) or not text[end].isalnum()


def concepts(text: str) -> dict[str, list[tuple[int, str]]]:
    """Every concept found in text: concept -> [(position, matched words)], in order of position.

    At each position the longest stem wins (one word, one concept; "code" stems come first among
    equals, so 確認番号 is a code rather than 確認 a verification)."""
    text = text[:SCAN_CHARS]
    idx = _index()
    best: dict[int, tuple[str, str]] = {}  # position -> (concept, words)

    def offer(pos: int, concept: str, words: str) -> None:
        held = best.get(pos)
        if held is None or len(words) > len(held[1]):
            best[pos] = (concept, words)

    latin, cjk = idx.latin, idx.cjk
    for m in _WORD.finditer(text):
        pos = m.start()
        for stem in latin.get(text[pos:pos + KEY], ()):
            if text.startswith(stem.text, pos) and (not stem.whole or _whole_end(text, pos + len(stem.text))) \
                    and not _excluded(text, pos, stem.text):
                offer(pos, stem.concept, stem.text)
                break
    for m in idx.cjk_starts.finditer(text):
        pos = m.start()
        for stem in cjk[text[pos]]:
            if text.startswith(stem.text, pos) and not _excluded(text, pos, stem.text):
                offer(pos, stem.concept, stem.text)
                break
    found: dict[str, list[tuple[int, str]]] = {}
    covered = -1
    for pos in sorted(best):
        if pos < covered:
            continue  # inside a longer match ("認" of 確認番号)
        concept, words = best[pos]
        found.setdefault(concept, []).append((pos, words))
        covered = pos + len(words)
    return found


def _near(a: list[tuple[int, str]], b: list[tuple[int, str]], window: int) -> tuple[str, str] | None:
    positions = [p for p, _ in b]
    for pos, word in a:
        i = bisect.bisect_left(positions, pos - window)
        while i < len(positions) and positions[i] <= pos + window:
            if b[i][0] != pos or b[i][1] != word:  # the same words are not two concepts
                return word, b[i][1]
            i += 1
    return None


def intents(text: str, kinds: tuple[str, ...] | None = None) -> list[Intent]:
    """The lure intents of text: concept pairs within WINDOW characters, and a code-shaped token
    next to the "code" concept. Urgency is left to the phrase vocabulary: alone, words like
    "immediately" say too little to stand as a concept."""
    found = concepts(text)
    out = []
    for kind, pairs in PAIRS.items():
        if kinds is not None and kind not in kinds:
            continue
        for a, b in pairs:
            if a in found and b in found and (words := _near(found[a], found[b], WINDOW)) is not None:
                out.append(Intent(kind=kind, evidence=f"{words[0]!r} ~ {words[1]!r}"))
                break
        else:
            if kind == "otp" and "code" in found and (token := _code_token_near(text, found["code"])):
                out.append(Intent(kind="otp", evidence=f"{found['code'][0][1]!r} ~ {token!r}"))
    return out


def _code_token_near(text: str, codes: list[tuple[int, str]]) -> str | None:
    for pos, _ in codes[:20]:
        window = text[max(0, pos - CODE_WINDOW): pos + CODE_WINDOW]
        t = CODE_TOKEN.search(window)
        if t and not YEAR.fullmatch(t.group(0)):
            return t.group(0)
    return None
