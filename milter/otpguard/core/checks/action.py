"""Calls to action: what the message asks the reader to do, and where that leads.

A call to action is what turns a claim into an attack: a button or link to a site that is not
the brand's, a form, a QR code, an attachment to open, a number to call, a reply address
elsewhere. Links are judged by where the reader lands (through redirectors and trackers:
redirects.py). What is not a call to action: links to the brand's own hosts, a mailing list's
own links (List-* fields, its footer), unsubscribe links, and a few third-party links among
many brand links (a carrier's tracking page in a genuine shipping notice).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from ..domains import is_ip, lookalike, registered_domain
from ..normalize import clean
from ..redirects import redirect_target
from ..urls import host_of

if TYPE_CHECKING:
    from .base import Context


@dataclass(frozen=True, slots=True)
class CallToAction:
    kind: str  # button | link | links | form | qr | attachment | phone | reply
    target: str  # host, file name, number or address
    risky: bool  # the destination is suspect in itself (lookalike, IP, shortener, free hosting...)

    def describe(self) -> str:
        return f"{self.kind} {self.target}"


# Anchor texts that ask to act, in the eight languages (buttons and "click here" links).
ACTION_WORDS = re.compile(
    r"\b(?:sign ?in|log ?in|login|verify|confirm|update|validate|unlock|restore|reactivate|secure|review|"
    r"check|view (?:account|details|activity|order|payment)|click here|here|continue|proceed|resolve|"
    r"cancel|manage|claim|redeem|get started|access|open|download|pay|submit|start|go to|visit|participate|join|"
    r"connexion|se connecter|connectez|vérifier|confirmer|mettre à jour|valider|cliquez|ici|continuer|"
    r"débloquer|anmelden|einloggen|bestätigen|verifizieren|aktualisieren|hier|klicken|weiter|entsperren|"
    r"überprüfen|iniciar sesión|verificar|confirmar|actualizar|aquí|haga clic|continuar|desbloquear|accedi|"
    r"verifica|conferma|aggiorna|qui|clicca|continua|sblocca|entrar|atualizar|aqui|clique|teilnehmen|gewinnen|"
    r"participer|participar|partecipa|reclamar|réclamer|einlösen|riscatta|resgatar)\b"
    r"|ログイン|サインイン|確認|認証|更新|変更|解除|こちら|ここ|クリック|手続き|続行|詳細|支払|お支払|登録|参加|応募|受け取"
    r"|登录|验证|驗證|确认|確認|点击|點擊|这里|這裡|立即|查看", re.I)
UNSUBSCRIBE_WORDS = re.compile(
    r"unsubscribe|opt[ -]?out|manage (?:your )?(?:preferences|subscriptions?)|email preferences|"
    r"配信停止|配信解除|メール配信|désabonner|désinscri|abmelden|austragen|abbestellen|darse de baja|"
    r"cancelar (?:la )?suscripción|disiscriv|annulla l'iscrizione|cancelar inscrição|descadastr|退订|取消订阅", re.I)
SHORTENERS = frozenset("""
bit.ly bitly.com tinyurl.com t.co goo.gl ow.ly is.gd buff.ly rebrand.ly cutt.ly shorturl.at rb.gy t.ly
me2.kr s.id bit.do tiny.cc v.gd qrco.de x.gd urlz.fr shorte.st adf.ly bl.ink short.io tiny.one u.to
clck.ru han.gl vo.la goo.su 2u.pw lnkd.in shorturl.com soo.gd tr.im cli.gs budurl.com snip.ly
trib.al db.tt 1url.com t2m.io urlr.me inx.lv t.me kutt.it gg.gg rotf.lol zpr.io surl.li
""".split())
# Hosts where anyone can publish a page (a login page costs nothing there).
FREE_HOSTING = frozenset("""
firebaseapp.com web.app blogspot.com github.io glitch.me netlify.app vercel.app herokuapp.com
weebly.com wixsite.com wordpress.com 000webhostapp.com godaddysites.com googleapis.com
amazonaws.com cloudfront.net linodeobjects.com digitaloceanspaces.com r2.dev pages.dev workers.dev
azurewebsites.net windows.net ipfs.io dweb.link square.site carrd.co notion.site webflow.io
yolasite.com jimdosite.com surge.sh repl.co ngrok.io ngrok-free.app trycloudflare.com translate.goog
firebasestorage.app backblazeb2.com wasabisys.com myshopify.com sharepoint.com onmicrosoft.com
""".split())
FREE_HOSTING_HOSTS = frozenset({"script.google.com", "sites.google.com", "docs.google.com", "forms.gle",
                                "drive.google.com", "storage.googleapis.com", "firebasestorage.googleapis.com"})
# Attachments a reader opens into something that can ask for a password or run code.
OPENABLE = re.compile(r"\.(?:html?|shtml|xhtml|svgz?|pdf|zip|rar|7z|gz|iso|img|vhdx?|docm|xlsm|pptm|docx?|xlsx?|rtf|"
                      r"js|jse|vbs|wsf|hta|exe|scr|lnk|one|msi|ics)$", re.I)
OPENABLE_TYPES = ("text/html", "application/xhtml", "image/svg", "application/pdf", "application/zip", "application/rtf",
                  "text/rtf", "application/msword", "application/vnd.openxmlformats",
                  "application/x-rar", "application/x-7z", "application/java", "application/x-msdownload")
_DOMAIN_IN_TEXT = re.compile(r"(?:https?://)?((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24})(?![a-z0-9-])", re.I)
OFF_BRAND_SHARE = 0.5
CALLBACK_KINDS = frozenset({"dispute", "payment", "locked", "signin"})  # off-brand links are a call to action when at least this share of all links


def web_href(href: str) -> bool:
    h = href.strip().lower()
    return h.startswith(("http://", "https://", "//", "www.")) or h.startswith("hxxp")


def landing(href: str) -> tuple[str, str]:
    """(host the reader lands on, the URL) after any redirector or tracker in the link."""
    target = redirect_target(href)
    url = target or href
    return host_of(url), url


def list_links(ctx: "Context") -> tuple[frozenset[str], frozenset[str]]:
    """A mailing list's own links: (registered domains of the list, exact unsubscribe URLs).

    The list is named by List-Id and its List-Post/Archive/Help/Subscribe/Owner fields (RFC 2369,
    RFC 2919). List-Unsubscribe alone is added by every bulk sender too, often on the sender's
    click-tracking domain: only its exact URLs are excluded, not its domain.
    """
    msg = ctx.msg
    domains: set[str] = set()
    for name in ("list-post", "list-archive", "list-help", "list-subscribe", "list-owner"):
        for value in msg.header_all(name)[:3]:
            for url in re.findall(r"<([^>]+)>", value):
                host = url.rpartition("@")[2] if url.lower().startswith("mailto:") else host_of(url)
                if host and (reg := registered_domain(host.rstrip(">").lower())):
                    domains.add(reg)
    list_id = msg.header("list-id")
    if list_id and (m := re.search(r"<([^>]+)>", list_id)) and (reg := registered_domain(m.group(1).lower())):
        domains.add(reg)
    unsubscribe = {url.strip() for value in msg.header_all("list-unsubscribe")[:3]
                   for url in re.findall(r"<([^>]+)>", value)}
    return frozenset(domains), frozenset(unsubscribe)


def destination_risk(ctx: "Context", host: str, url: str, text: str) -> str | None:
    """Why a foreign destination is suspect in itself, or None."""
    brand = ctx.brand
    if is_ip(host):
        return "IP address"
    reg = registered_domain(host)
    if "xn--" in host:
        return "punycode"
    if lookalike(host, brand) is not None:
        return "lookalike"
    if reg in SHORTENERS:
        return "shortener"
    if reg in FREE_HOSTING or host in FREE_HOSTING_HOSTS or brand.customer_hosted(host):
        return "free hosting"
    if text and "." in text and (m := _DOMAIN_IN_TEXT.search(text.strip())):
        shown = m.group(1).lower()
        if brand.trusts_link(shown) and registered_domain(shown) != reg:
            return f"shows {shown}"
    path = clean(unquote(url.lower().split(host, 1)[-1]))[:300]
    if ctx.names_brand(path):
        return "brand in path"
    return None


def calls_to_action(ctx: "Context") -> list[CallToAction]:
    msg = ctx.msg
    brand = ctx.brand
    out: list[CallToAction] = []
    listed, unsubscribe = list_links(ctx)
    on = off = 0
    first_off: CallToAction | None = None
    seen: set[tuple[str, str]] = set()
    for link in msg.links[: ctx.max_links]:
        if not web_href(link.href) or link.source == "form":  # forms are judged below, once
            continue
        host, url = landing(link.href)
        if not host:
            continue
        if brand.trusts_link(host):
            if link.source != "bare":  # "Amazon.co.jp" written in the text is a name, not a link placed
                on += 1
            continue
        if registered_domain(host) in listed or link.href.strip() in unsubscribe \
                or (link.text and UNSUBSCRIBE_WORDS.search(link.text)):
            continue  # the list's own links and unsubscribe links ask nothing of the reader
        off += 1
        risk = destination_risk(ctx, host, url, link.text)
        if link.source == "qr":
            kind = "qr"
        elif link.text and ACTION_WORDS.search(link.text):
            kind = "button"
        else:
            kind = "link"
        cta = CallToAction(kind=kind, target=host if not risk else f"{host} ({risk})", risky=risk is not None)
        if first_off is None:
            first_off = cta
        if (kind != "link" or risk) and (kind, host) not in seen:
            seen.add((kind, host))
            out.append(cta)
    if first_off is not None and not out and off / (off + on) >= OFF_BRAND_SHARE:
        out.append(CallToAction(kind="links", target=first_off.target, risky=first_off.risky))
    for form in msg.forms:
        target = host_of(form.action)
        if target and brand.trusts_link(target) and not form.has_password:
            continue
        if form.has_password or len(form.inputs) >= 1:
            out.append(CallToAction(kind="form", target=target or "this page", risky=form.has_password))
    for att in msg.attachments:
        name = att.filename.lower()
        if OPENABLE.search(name) or att.content_type.lower().startswith(OPENABLE_TYPES):
            out.append(CallToAction(kind="attachment", target=att.filename or att.content_type,
                                    risky=name.endswith((".html", ".htm", ".shtml", ".xhtml", ".svg", ".js", ".hta",
                                                         ".exe", ".scr", ".lnk", ".iso", ".img"))))
    if (number := ctx.callback_number) is not None:
        # The callback scam: "an order/charge you did not make, your account is locked: call us".
        # A shop's own help line beside its code mail asks nothing suspect.
        risky = bool(CALLBACK_KINDS.intersection(ctx.lures))
        out.append(CallToAction(kind="phone", target=number, risky=risky))
    from_domain = ctx.from_domain
    relay = ctx.relay
    for a in msg.reply_to if relay is None or relay[0] != "list" else ():  # a list's Reply-To is the author
        if a.domain and a.domain != from_domain and not brand.trusts_link(a.domain) \
                and registered_domain(a.domain) != registered_domain(from_domain or "") \
                and registered_domain(a.domain) not in listed:
            out.append(CallToAction(kind="reply", target=a.domain, risky=False))
            break
    return out
