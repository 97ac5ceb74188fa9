"""Lure vocabulary by kind, in ja, en, fr, de, es, it, pt, zh (and a little pl, nl).

Patterns run on `normalize.clean` text: NFKC (fullwidth folded), invisibles removed,
whitespace folded, case folded. Keep phrases generic (what every lure of the kind says),
never a sentence from one sample.
"""
from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from re import _constants as _c, _parser
from typing import Any

_W = r"(?:\s*)"  # Japanese and Chinese have no spaces; Latin phrases use " " after clean()

LURES: dict[str, list[str]] = {
    # Security codes, one-time passwords, PINs.
    "otp": [
        r"\b(?:security|verification|authentication|confirmation|login|sign[- ]?in|access|one[- ]time) (?:code|pin|passcode)s?\b",
        r"\bone[- ]time (?:password|passcode|pass ?code)\b", r"\botp\b", r"\bpasscode\b",
        r"\b(?:2|two)[- ](?:step|factor) (?:verification|authentication)\b", r"\bsecurity pin\b",
        r"ワンタイム(?:パスワード|コード)?", r"セキュリティ[・ ]?コード", r"認証(?:コード|番号)", r"確認コード", r"暗証番号",
        r"\bcode (?:de |d')(?:sécurité|vérification|confirmation|validation|connexion|accès)\b",
        r"\bmot de passe (?:à usage unique|unique|temporaire)\b", r"\bcode à usage unique\b",
        r"sicherheits[- ]?(?:code|pin)", r"bestätigungs[- ]?code", r"verifizierungs[- ]?code", r"einmal(?:passwort|code|kennwort)",
        r"\bprüf(?:code|nummer)\b", r"\b(?:tan|mtan|pushtan)\b",
        r"\bcódigo de (?:seguridad|verificación|confirmación|acceso|autenticación|segurança|verificação|confirmação)\b",
        r"\bcontraseña (?:de un solo uso|temporal)\b", r"\bclave (?:de un solo uso|dinámica)\b",
        r"\bcodice (?:di )?(?:sicurezza|verifica|conferma|accesso|otp)\b", r"\bpassword monouso\b",
        r"\bsenha (?:única|de uso único|temporária)\b",
        r"验证码", r"驗證碼", r"安全码", r"安全碼", r"动态密码", r"一次性密码", r"校验码",
        r"\bkod (?:weryfikacyjny|bezpieczeństwa|jednorazowy|autoryzacyjny)\b", r"\bbeveiligingscode\b", r"\bverificatiecode\b",
    ],
    # Sign-in attempts, unusual activity, new devices.
    "signin": [
        r"\b(?:sign|log)[- ]?in (?:attempt|from a new|on a new|activity|alert)", r"\b(?:login|sign[- ]?in) attempt",
        r"\b(?:unusual|suspicious|unrecogni[sz]ed|strange|irregular|abnormal) (?:sign[- ]?in|log[- ]?in|activity|access|attempt|login)",
        r"\bunauthori[sz]ed (?:access|activity|login|sign[- ]?in|use|transaction|payment|purchase)",
        r"\bnew device\b", r"\bsomeone (?:tried|attempted|has tried|signed|logged)",
        r"不正(?:な)?(?:アクセス|ログイン|利用|使用)", r"異常な(?:アクティビティ|ログイン|アクセス|活動)", r"不審な(?:ログイン|アクセス|アクティビティ)",
        r"新しい(?:デバイス|端末)", r"第三者による", r"(?:ログイン|サインイン)(?:の)?(?:試み|履歴|通知)",
        r"\b(?:connexion|activité|tentative) (?:inhabituelle|suspecte|de connexion)", r"\baccès non autorisé\b", r"\bnouvel appareil\b",
        r"anmeldeversuch", r"\b(?:ungewöhnliche|verdächtige) (?:aktivität|anmeldung|aktivitäten)", r"\bneues gerät\b", r"\bunbefugte[rn]? zugriff",
        r"\bintento de (?:inicio de sesión|acceso)", r"\bactividad (?:inusual|sospechosa)", r"\bacceso no autorizado\b", r"\bnuevo dispositivo\b",
        r"\baccesso (?:sospetto|insolito|non autorizzato)", r"\btentativo di accesso\b", r"\battività (?:sospetta|insolita)",
        r"\btentativa de (?:login|acesso)", r"\batividade (?:suspeita|incomum)", r"\bacesso não autorizado\b",
        r"异常登录", r"異常登入", r"登录尝试", r"可疑活动", r"未经授权", r"新设备",
    ],
    # Password resets and changes.
    "reset": [
        r"\b(?:reset|change|update|renew|confirm) (?:your |the )?password", r"\bpassword (?:reset|change|recovery)\b",
        r"\bpassword (?:has been|was|will be) (?:changed|reset|updated|expired)",
        r"パスワード(?:の|を)?(?:再設定|変更|リセット|更新)",
        r"\bréinitialis\w* (?:votre |de |du )?mot de passe", r"\bmot de passe (?:modifié|changé|expiré)", r"\b(?:changer|modifier) (?:votre |de )?mot de passe",
        r"\b(?:passwort|kennwort) (?:zurücksetzen|ändern|geändert|aktualisieren)", r"\b(?:passwort|kennwort)[- ]?(?:änderung|zurücksetzung)",
        r"\b(?:restablecer|cambiar|actualizar) (?:tu |su |la )?contraseña", r"\bcontraseña (?:cambiada|restablecida)",
        r"\b(?:reimposta|reimpostare|modifica|modificare|cambia) (?:la |tua |la tua )?password",
        r"\b(?:redefinir|alterar|trocar) (?:sua |a )?senha",
        r"重置密码", r"重設密碼", r"修改密码", r"密码已更改",
    ],
    # Accounts locked, suspended, on hold.
    "locked": [
        r"\baccount (?:has been |is |was |will be |been )?(?:temporarily |permanently )?(?:locked|suspended|disabled|on hold|restricted|closed|deactivated|blocked|frozen|limited|terminated)",
        r"\b(?:suspend|lock|restrict|clos|deactivat|block|terminat|freez)\w* (?:your |the )?(?:amazon |prime )?account",
        r"\baccount (?:will be |has been |was )?(?:permanently |automatically )?(?:deleted|removed|cancell?ed)", r"\b(?:placed|put) on hold\b", r"\b(?:benefits|membership|services?) (?:are |is |has been |have been )?(?:on hold|suspended|paused|cancell?ed)",
        r"(?:アカウント|ご利用|サービス)[^。\n]{0,15}(?:停止|ロック|制限|凍結|無効|削除され)", r"(?:停止|ロック|制限|凍結)され(?:まし|てい)",
        r"\bcompte (?:a été |est |sera )?(?:temporairement )?(?:suspendu|bloqué|verrouillé|désactivé|restreint|limité|fermé)", r"\bsuspension de (?:votre )?compte",
        r"\b(?:konto|zugang) (?:wurde |ist |wird )?(?:vorübergehend )?(?:gesperrt|eingeschränkt|deaktiviert|suspendiert|blockiert)", r"kontosperrung", r"\bgesperrt\b",
        r"\bcuenta (?:ha sido |está |será )?(?:temporalmente )?(?:suspendida|bloqueada|desactivada|restringida|limitada)",
        r"\baccount (?:è stato |è |sarà )?(?:temporaneamente )?(?:sospeso|bloccato|disattivato|limitato)",
        r"\bconta (?:foi |está |será )?(?:temporariamente )?(?:suspensa|bloqueada|desativada|restrita)",
        r"(?:账户|帐户|账号)[^。\n]{0,6}(?:冻结|锁定|停用|暂停)", r"帳戶[^。\n]{0,6}(?:凍結|鎖定|停用)",
    ],
    # Failed payments and billing updates.
    "payment": [
        r"\bpayment (?:method )?(?:was |has been |could not be |couldn't be )?(?:declined|failed|unsuccessful|rejected|refused|not (?:be )?(?:processed|verified|authori[sz]ed))",
        r"\b(?:update|verify|confirm|validate|check) (?:your |the )?(?:payment|billing|card|credit card)(?: details| information| method| info)?\b",
        r"\bbilling (?:issue|problem|information|details|error)\b", r"\b(?:card|credit card) (?:was |has been |is )?(?:declined|expired|invalid)",
        r"\b(?:renewal|payment|charge|subscription)(?: was| has| could)? (?:failed|not (?:be )?(?:completed|complited|processed))", r"\binvalid (?:billing|payment)",
        r"(?:お支払い|支払い?)(?:方法|情報)(?:に問題|の(?:更新|変更|確認|再設定)|が(?:承認|無効|拒否|確認でき)|を(?:更新|確認|変更))",
        r"(?:お支払い|支払い?)(?:方法|情報)[^。\n]{0,15}(?:問題|一致して|更新して|確認でき|失敗|無効)", r"支払情報", r"決済(?:に失敗|ができ|エラー)",
        r"クレジットカード(?:情報)?(?:の|を)?(?:更新|有効期限|確認|再登録)", r"請求先(?:住所|情報)?[^。\n]{0,10}(?:確認|更新)",
        r"\bpaiement (?:refusé|échoué|a échoué|rejeté)", r"\bconfirme[rz]? (?:votre |le )?paiement",
        r"\b(?:mettre à jour|mise à jour|mettez à jour|vérifier|vérifiez|confirmer|confirmez|modifier) (?:de |vos |votre |les |des )?(?:informations|moyen|mode|méthode|données|coordonnées) (?:de paiement|bancaires)",
        r"\bcarte (?:bancaire )?(?:refusée|expirée)",
        r"\bzahlung (?:ist |wurde )?(?:fehlgeschlagen|abgelehnt)", r"\bkreditkarte (?:ist )?(?:abgelaufen|abgelehnt)",
        r"zahlungs(?:methode|informationen|daten|art|mittel)\w* (?:zu )?(?:aktualisieren|bestätigen|überprüfen|verifizieren)",
        r"\b(?:aktualisieren|bestätigen|überprüfen|verifizieren) sie (?:ihre|ihr|ihren) (?:zahlungs\w+|kreditkarte\w*|bankdaten)",
        r"\bpago (?:rechazado|fallido|no se pudo)", r"\bprocesar (?:su |tu )?pago",
        r"\b(?:actualizar|actualice|actualiza|verificar|verifique|confirmar|confirme) (?:su |tu |sus |tus |el |los |la )?(?:método|datos|información|forma) de pago",
        r"\bpagamento (?:rifiutato|non riuscito|recusado|falhou)",
        r"\b(?:aggiorna|aggiornare|aggiorni|verifica|verificare|conferma|confermare) (?:il tuo |il suo |il |i tuoi |i )?(?:metodo|dati) di pagamento",
        r"\b(?:atualizar|atualize|verificar|verifique|confirmar|confirme) (?:sua |seu |a sua |o seu |o |a |os )?(?:método|forma|dados) de pagamento",
        r"付款失败", r"支付失败", r"付款方式", r"支付方式",
    ],
    # Requests to verify or confirm the account, identity or details.
    "verify": [
        r"\b(?:verify|confirm|validate|update|reactivate|restore|unlock) (?:your |the )?(?:amazon |prime )?(?:account|identity|information|details|personal|profile|contact)",
        r"\b(?:account|identity) (?:verification|confirmation)\b",
        r"\b(?:log|sign) ?in (?:to|into) (?:your|the) (?:account|\w+ account)", r"\b(?:log|sign) ?in (?:and|to) (?:verify|confirm|update|restore)",
        r"ログインして", r"\bloggen sie sich\b", r"\bmelden sie sich (?:\w+ )?an\b", r"\bconnectez-vous\b", r"\binicie sesión\b",
        r"\baccedi al tuo\b", r"\bfaça login\b",
        r"(?:本人|アカウント|個人情報|登録情報|お客様情報|アカウント情報|ご登録情報)[^。\n]{0,4}(?:確認|認証|更新|証明|訂正)", r"所有権の証明", r"情報を?(?:更新|確認)して",
        r"\b(?:vérifier|confirmer|valider|mettre à jour|réactiver) (?:votre |vos )?(?:compte|identité|informations|coordonnées|données)",
        r"\b(?:bestätigen|verifizieren|aktualisieren) sie (?:jetzt |bitte )?(?:ihr|ihre|ihren|deine?n?) (?:konto|identität|daten|angaben|kundendaten|pin)",
        r"\b(?:bestätige|verifiziere|aktualisiere) (?:jetzt |bitte )?(?:dein|deine|deinen) (?:konto|identität|daten|angaben|pin|sicherheits)",
        r"\b(?:konto|identität|daten|kundendaten)\w* (?:bestätigen|verifizieren|aktualisieren)",
        r"\b(?:verificar|confirmar|actualizar|verifique|confirme|actualice) (?:su|tu|sus|tus) (?:cuenta|identidad|datos|información)", r"\bconfirmación de (?:sus|tus) datos",
        r"\b(?:verificare|confermare|aggiornare|verifica|conferma|aggiorna) (?:il tuo|i tuoi|la tua|il suo|i suoi) (?:account|identità|dati)",
        r"\b(?:verificar|confirmar|atualizar|verifique|confirme|atualize) (?:sua|seus|suas|a sua|os seus) (?:conta|identidade|dados|informações)",
        r"验证(?:您的)?(?:账户|身份)", r"确认(?:您的)?(?:账户|身份|信息)", r"驗證(?:您的)?(?:帳戶|身份)",
    ],
    # Prizes, vouchers, gift cards, rewards.
    "prize": [
        r"\bgift ?cards?\b", r"\bvouchers?\b", r"\byou(?:'ve| have)? (?:won|been (?:selected|chosen))", r"\bwinners?\b", r"\brewards?\b",
        r"\bbonus\b", r"\bcash ?back\b", r"\bclaim (?:your|now|it)\b", r"\bcongratulations\b", r"\bfree (?:gift|prize|iphone|trial)\b",
        r"gutschein", r"gewinnspiel", r"\bgewinnen sie\b", r"\bgewonnen\b", r"geschenkkarte", r"\bprämie\b", r"\bbelohnung\b", r"\bkostenlos\b",
        r"\bcarte[- ]cadeau\b", r"\bbon d'achat\b", r"\bgagn(?:é|ez|ant)\b", r"\brécompense\b", r"\bfélicitations\b",
        r"\btarjeta regalo\b", r"\bcheque regalo\b", r"\bganador\b", r"\bhas ganado\b", r"\bpremio\b", r"\brecompensa\b",
        r"\bbuono regalo\b", r"\bcarta regalo\b", r"\bhai vinto\b", r"\bvincitore\b",
        r"\bcartão[- ]presente\b", r"\bvale[- ]presente\b", r"\bvocê ganhou\b", r"\bprêmio\b",
        r"ギフト券", r"ギフトカード", r"当選", r"礼品卡", r"中奖",
    ],
    # "An order you did not make": the refund and callback scams.
    "dispute": [
        r"\b(?:if )?(?:you )?(?:did not|didn't|do not|don't|have not|haven't)(?: believe you)? (?:make|made|place|placed|order|ordered|authori[sz]e|authori[sz]ed|recogni[sz]e|request|requested)\b(?: this| the| these| it)",
        r"\bdispute (?:this|the) (?:order|purchase|transaction|charge|payment)",
        r"\bnot (?:recogni[sz]e|authori[sz]e) (?:this|the) (?:order|purchase|transaction|charge)",
        r"心当たりのない(?:注文|ご注文|請求|購入)", r"ご注文(?:が|を)?(?:キャンセル|取り消)",
        r"\bsi vous n'(?:avez|êtes) pas (?:effectué|passé|commandé|autorisé)", r"\bwenn sie (?:diese bestellung|diesen kauf) nicht",
        r"\bsi (?:usted )?no (?:realizó|ha realizado|hizo|autorizó) (?:esta|este)", r"\bse non hai (?:effettuato|autorizzato)",
    ],
    # Pressure to act now.
    "urgency": [
        r"\bwithin (?:the next )?(?:24|48|72|12|2|3|1) ?(?:hours|hrs|h|days?)\b",
        r"\b(?:act|update|verify|confirm|respond|reply|call|log in|sign in|click) (?:now|immediately|right away)\b", r"\burgent(?:ly)?\b", r"\bas soon as possible\b",
        r"\bfinal (?:notice|warning|reminder)\b", r"\blast (?:chance|warning|reminder)\b", r"\baction (?:required|request|needed)\b",
        r"\b(?:expires?|expiring|expired) (?:today|soon|in)\b", r"\bfailure to\b",
        r"(?:24|48|72|12)時間以内", r"(?:24|48|72)じかん", r"至急", r"緊急", r"直ちに", r"速やかに", r"以内に",
        r"\bdans les (?:24|48|72) ?(?:heures|h)\b", r"\bimmédiatement\b", r"\burgent\b", r"\bdernier délai\b", r"\bdernière chance\b", r"\baction requise\b",
        r"\binnerhalb von (?:24|48|72) ?(?:stunden|h)\b", r"\bsofort\b", r"\bdringend\b", r"\bletzte chance\b", r"\bletzte mahnung\b",
        r"\b(?:en las próximas|dentro de las) (?:24|48|72) ?horas\b", r"\binmediatamente\b", r"\burgente\b", r"\búltima oportunidad\b",
        r"\bentro (?:le )?(?:24|48|72) ?ore\b", r"\bimmediatamente\b", r"\bultima possibilità\b",
        r"\b(?:dentro de|em) (?:24|48|72) ?horas\b", r"\bimediatamente\b",
        r"(?:24|48|72)小时内", r"立即", r"紧急",
    ],
}

# Words near which a phone number is a callback lure.
CALL_WORDS = re.compile(
    r"\b(?:call|dial|phone|contact|helpline|hotline|toll[- ]?free|support|customer service|cancel)\b"
    r"|電話|お問い合わせ|appel(?:ez|er)|téléphone|anrufen|rufen sie|llam(?:e|ar)|teléfono|chiam(?:a|are)|ligue|致电|电话")

# A code: 4 to 8 digits (optionally split by a space or hyphen), or a mixed letter-digit token.
CODE_TOKEN = re.compile(r"(?<![\w#/.:-])(?:\d{3}[ -]?\d{3}|\d{4,8})(?![\w/:-]|[.,]\d)")


def _word_bounded(pattern: str) -> bool:
    """Is the pattern "\\b" followed by a sequence (no alternation at its top level)?"""
    if not pattern.startswith(r"\b"):
        return False
    depth, i, in_class = 0, 2, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            # A ] right after [ or [^ is a member of the class, not its end.
            i += 1 if pattern[i + 1:i + 2] == "]" else 2 if pattern[i + 1:i + 3] == "^]" else 0
        elif c == "(":
            if pattern[i + 1:i + 3] in ("?#", "?x"):  # comments and verbose mode: not worth parsing
                return False
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return False
        i += 1
    return True


class Phrases:
    """Compiled phrases (a lure kind, the customer-address words): search() and finditer()
    find what `pattern` finds, faster.

    Python's regex engine skips ahead in C only when a pattern starts with a literal or a
    character class. An alternation starting with \\b does not, so every position of the text
    enters the matcher. When the first characters of all phrases are known (first_chars),
    `_gated` starts with their class, and a lookbehind of width 1 runs `pattern` from that
    character: positions no phrase can start at are skipped in C (each kind about 2x faster
    on real mail). The match at the found position is then taken from `pattern` itself: the
    same span and groups as pattern.search gives (only its .pos is that position).
    """

    __slots__ = ("pattern", "_gated")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        # Flags given to re.compile are not in pattern.pattern: such a pattern stays ungated.
        first = first_chars(pattern.pattern) if pattern.flags == re.UNICODE else None
        try:
            self._gated = None if not first else re.compile(
                "[" + "".join(re.escape(c) for c in sorted(first)) + "](?<=(?=" + pattern.pattern + ")(?s:.))")
        except re.error:  # e.g. a lookbehind inside that is only fixed-width on its own
            self._gated = None

    @property
    def gated(self) -> bool:
        """True when searches skip, in C, positions no phrase can start at."""
        return self._gated is not None

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        """pattern.search(text, pos)."""
        if self._gated is None:
            return self.pattern.search(text, pos)
        hit = self._gated.search(text, pos)
        return None if hit is None else self.pattern.match(text, hit.start())

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """pattern.finditer(text)."""
        if self._gated is None:
            yield from self.pattern.finditer(text)  # it may match empty text: re knows how to go on
            return
        pos = 0  # a gated pattern never matches empty text (first_chars would be None)
        while (m := self.search(text, pos)) is not None:
            yield m
            pos = m.end()


def compile_kind(patterns: list[str] | tuple[str, ...]) -> Phrases:
    """One alternation per lure kind: a single pass over the text finds the kind.

    Neighbouring phrases that start at a word boundary share one leading \\b: Python's regex
    engine then tries them only where a word starts instead of trying each one at every
    character (each kind 2.5-8x faster on real mail). The order of the phrases is kept, so
    every match is the same text at the same place as with the plain alternation
    (tests/test_vocabulary.py). Phrases adds the skip over impossible first characters.
    """
    parts: list[str] = []
    for bounded, run in itertools.groupby(patterns, key=_word_bounded):
        if bounded:
            parts.append(r"\b(?:" + "|".join(f"(?:{p[2:]})" for p in run) + ")")
        else:
            parts += [f"(?:{p})" for p in run]
    return Phrases(re.compile("|".join(parts)))


_MAX_CLASS = 5000  # a wider character range at the start: no gate (it would skip little anyway)


def first_chars(pattern: str) -> frozenset[str] | None:
    """Every character a match of pattern can start with; None when that is not sure
    (empty matches, lookarounds, \\w-style classes, negated classes, flags, wide ranges)."""
    try:  # re._parser is private: a Python whose parse tree looks different just gets no gate
        tree = _parser.parse(pattern)
        if tree.state.flags & ~re.UNICODE:
            return None  # inline global flags ("(?i)", "(?s)"): they could not stand inside the gate
        first = _first(list(tree))
    except Exception:  # noqa: BLE001
        return None
    return frozenset(first) if first else None


def _first(items: list[tuple[Any, Any]]) -> set[str] | None:
    """First characters of a sequence of parsed items (None: unknown or possibly empty)."""
    out: set[str] = set()
    for op, av in items:
        if op is _c.AT:
            continue  # \b, ^, $: zero width, the next item starts the match
        if op is _c.LITERAL:
            return out | {chr(av)}
        if op is _c.IN:
            chars = _class_chars(av)
            return None if chars is None else out | chars
        if op is _c.BRANCH:
            for alternative in av[1]:
                chars = _first(list(alternative))
                if chars is None:
                    return None
                out |= chars
            return out
        if op is _c.SUBPATTERN:
            _, add_flags, del_flags, inner = av
            chars = None if add_flags or del_flags else _first(list(inner))
            return None if chars is None else out | chars
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            low, _, inner = av
            chars = _first(list(inner))
            if chars is None:
                return None
            out |= chars
            if low >= 1:
                return out
            continue  # optional: the next item may start the match as well
        return None  # lookarounds, backreferences, ANY, NOT_LITERAL, possessive/atomic: unsure
    return None  # the sequence can match empty text


def _class_chars(items: list[tuple[Any, Any]]) -> set[str] | None:
    out: set[str] = set()
    for op, av in items:
        if op is _c.LITERAL:
            out.add(chr(av))
        elif op is _c.RANGE and av[1] - av[0] < _MAX_CLASS:
            out.update(chr(c) for c in range(av[0], av[1] + 1))
        else:
            return None  # NEGATE, CATEGORY (\w, \d, \s), wide ranges
    return out
