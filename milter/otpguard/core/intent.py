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

from .vocabulary import CODE_TOKEN, Phrases

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
        # "code" but not a promotion's, a post code, a QR or source code
        r"re:(?<!promo )(?<!promotional )(?<!discount )(?<!coupon )(?<!voucher )(?<!gift )(?<!zip )(?<!postal )"
        r"(?<!post )(?<!source )(?<!qr )(?<!bar )\bcodes?\b",
        "pin=", "pins=", "otp=", "passcode", "pass code", "one-time", "one time", "onetime", "2fa=", "mfa=",
        "tan=", "mtan=", "einmalcode", "einmalpasswort", "sicherheitscode", "bestätigungscode", "prüfcode",
        "kennzahl", "código", "clave=", "codice", "kod=", "token=",
    ), (
        # "番号" only as a code (確認番号, 認証番号...), not an order or phone number; "コード" not a coupon's
        r"re:(?:確認|認証|承認|暗証|照合|セキュリティ|ワンタイム|本人確認用)番号",
        r"re:(?<!クーポン)(?<!プロモーション)(?<!割引)(?<!QR)(?<!qr)(?<!バー)(?<!郵便)コード",
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
        "terminat", "block", "freez", "frozen", "cancel", "interrupt", "suspendu", "suspension", "bloqu",
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
        "non riuscit", "rifiutat", "non è stato possibile", "scadut", "non valid", "falhou", "recusad",
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
        "確認", "認証", "更新", "再設定", "再登録", "入力", "解除", "復旧", "証明", "验证", "驗證", "确认", "核实", "核實",
        "更新",
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

# An intent is two concepts within WINDOW characters of each other (either order), or one of
# several pairs. Kinds keep the names of the phrase vocabulary (vocabulary.LURES).
PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "otp": (("code", "enter"), ("code", "access"), ("code", "secret"), ("code", "anomaly")),
    "signin": (("access", "anomaly"), ("account", "anomaly")),
    "reset": (("secret", "change"), ("secret", "verify")),
    "locked": (("account", "restrict"), ("access", "restrict")),
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


def _alternative(stem: str, latin: bool) -> str:
    """One stem as a regex: "re:..." is a regex as written; a Latin stem ending in "=" is a whole
    word (plural s allowed); other Latin stems start a word and may go on (inflections); spaces
    inside a Latin stem match one space or none; CJK stems match anywhere."""
    if stem.startswith("re:"):
        return stem[3:]
    if not latin:
        return re.escape(stem)
    whole = stem.endswith("=")
    body = re.escape(stem.rstrip("=")).replace(r"\ ", " ?")
    return rf"\b{body}" + (r"s?\b" if whole else "")


def _alternation(stems: tuple[str, ...], latin: bool) -> str:
    return "|".join(f"(?:{_alternative(s, latin)})" for s in sorted(stems, key=len, reverse=True))


@lru_cache(maxsize=1)
def _patterns() -> dict[str, Phrases]:
    out = {}
    for concept, (latin, cjk) in CONCEPTS.items():
        parts = [_alternation(latin, True)] if latin else []
        if cjk:
            parts.append(_alternation(cjk, False))
        out[concept] = Phrases(re.compile("|".join(parts)))
    return out


def concepts(text: str) -> dict[str, list[tuple[int, str]]]:
    """Every concept found in text: concept -> [(position, matched words)], in order."""
    text = text[:SCAN_CHARS]
    found: dict[str, list[tuple[int, str]]] = {}
    if not text:
        return found
    for concept, pattern in _patterns().items():
        hits = [(m.start(), m.group(0)) for m in pattern.finditer(text)]
        if hits:
            found[concept] = hits
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
