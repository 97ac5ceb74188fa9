"""`otpguard explain FILE`: why one message got its verdict.

For each message: the brand claim (where the message claims to be the brand), the decision
path (authentication, claim, evidence, thresholds), every symbol as weight x strength = score
with its reason, every link with its registered domain and category, and the authentication
results. Everything is read from what the engine and the core expose (Decision and its scored
hits, the parsed message, the checks' Context.claim); no check logic is repeated here.

Exit status as `otpguard scan`: 0 clean, 1 suspicious or phish, 2 usage or config error,
3 unreadable input. FILE may be "-" for standard input (e.g. `postcat -hbq ID | otpguard explain -`).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any, TextIO

from .config import Config
from .core.checks.base import Context
from .core.linkinfo import LinkInfo, describe_link
from .core.model import Decision, Envelope, ScoredHit
from .core.parse import parse_message
from .core.pipeline import contexts
from .ops.terminal import columns, printable, shorten, wrap
from .scan import (EXIT_USAGE, Item, add_engine_arguments, analyse, auth_json, engine_or_none, envelope_of,
                   exit_status, iter_messages, level_of)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE",
                        help="a message (.eml), an mbox or Maildir (every message in it), or - for standard input")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    add_engine_arguments(parser)


def _contexts(raw: bytes, envelope: Envelope, config: Config) -> list[Context]:
    """The checks' view of the message, one per brand, as the engine builds it."""
    cfg = config.analysis
    return contexts(parse_message(raw[: cfg.max_parse_bytes], cfg), envelope, config)


def claims(ctxs: list[Context]) -> dict[str, dict[str, list[str]]]:
    """Per brand id: the places where the message claims to be that brand (strong, weak)."""
    return {ctx.brand.id: {"strong": list(ctx.claim.strong), "weak": list(ctx.claim.weak)} for ctx in ctxs}


def brand_context(decision: Decision, ctxs: list[Context]) -> Context | None:
    """The context of the brand the decision is about (the first brand when none is)."""
    return next((c for c in ctxs if c.brand.id == decision.brand), ctxs[0] if ctxs else None)


def links(ctx: Context | None) -> list[LinkInfo]:
    if ctx is None:
        return []
    return [describe_link(link.href, link.text, link.source, ctx.brand) for link in ctx.msg.links]


def _auth_line(decision: Decision, engine: Any) -> str:
    a = decision.auth
    if a is None:
        if not engine.verify:
            return "authentication: not checked (offline; --verify checks SPF, DKIM, DMARC and ARC by DNS)"
        return "authentication: not checked (the message claims no protected brand; auth.scope = \"brand\")"
    dkim = ", ".join(f"{d.domain}={d.result}" for d in a.dkim) or "none"
    aligned = f", aligned via {a.dmarc_aligned}" if a.dmarc_aligned else ""
    return (f"authentication ({a.source}): dmarc={a.dmarc} for {a.from_domain or '-'}{aligned}; "
            f"spf={a.spf}; dkim {dkim}; arc={a.arc}")


def decision_path(decision: Decision, ctx: Context | None, engine: Any) -> list[str]:
    """How the verdict came about, step by step, from the decision's own data."""
    scoring = engine.config.scoring
    if not decision.analysed:
        return [f"not analysed: {'; '.join(decision.notes) or 'no reason recorded'}; verdict clean"]
    steps = [_auth_line(decision, engine)]
    display = ctx.brand.display if ctx is not None else "the brand"
    if decision.genuine:
        steps.append(f"genuine: an aligned DMARC pass for a domain of {display}; the suspicion checks stood "
                     "down and the verdict is clean whatever the text says")
    elif ctx is not None and ctx.claim.strong:
        steps.append(f"claims to be {display} as the sender ({', '.join(ctx.claim.strong)}): every check ran")
    elif ctx is not None and ctx.claim.weak:
        steps.append(f"mentions {display} only in the body: a claim in passing, not a claim to be {display}")
        if discounted := [h for h in decision.hits if h.factor != 1.0]:
            steps.append(f"{len(discounted)} symbol(s) count at factor {discounted[0].factor:g} for a claim in passing")
    else:
        steps.append("claims no protected brand: only authentication and the test token are looked at")
    scored = [h for h in decision.hits if h.score != 0]
    steps.append(f"evidence: {len(scored)} scoring symbol(s), total {decision.score:.2f}"
                 + (f" ({len(decision.hits) - len(scored)} informational)" if len(decision.hits) > len(scored) else ""))
    if decision.genuine:
        steps.append("verdict: clean (genuine)")
    elif decision.score >= scoring.phish:
        steps.append(f"verdict: phish, {decision.score:.2f} >= scoring.phish {scoring.phish:.2f}")
    elif decision.score >= scoring.suspicious:
        steps.append(f"verdict: suspicious, {scoring.suspicious:.2f} <= {decision.score:.2f} < "
                     f"scoring.phish {scoring.phish:.2f}")
    else:
        steps.append(f"verdict: clean, {decision.score:.2f} < scoring.suspicious {scoring.suspicious:.2f}")
    return steps


def symbol_json(h: ScoredHit) -> dict[str, Any]:
    return {"name": h.symbol, "weight": h.weight, "strength": round(h.strength, 4), "factor": h.factor,
            "score": h.score, "reason": h.reason}


def arithmetic(h: ScoredHit) -> str:
    """weight x strength [x factor] = score, as the scoring computed it."""
    factor = f" x {h.factor:g}" if h.factor != 1.0 else ""
    return f"{h.weight:.2f} x {h.strength:.2f}{factor} = {h.score:.2f}"


def explanation(path: str, decision: Decision | None, error: str | None, ctxs: list[Context],
                engine: Any) -> dict[str, Any]:
    """Everything explain says about one message, as JSON-ready data."""
    if decision is None:
        return {"path": path, "verdict": None, "error": error}
    ctx = brand_context(decision, ctxs)
    scoring = engine.config.scoring
    return {
        "path": path, "verdict": level_of(decision), "level": decision.level.value, "score": decision.score,
        "genuine": decision.genuine, "analysed": decision.analysed, "brand": decision.brand,
        "thresholds": {"suspicious": scoring.suspicious, "phish": scoring.phish},
        "claim": claims(ctxs),
        "decision_path": decision_path(decision, ctx, engine),
        "symbols": [symbol_json(h) for h in decision.hits],
        "links": [{"href": li.href, "text": li.text, "source": li.source, "host": li.host,
                   "registered_domain": li.registered_domain, "category": li.category} for li in links(ctx)],
        "auth": auth_json(decision),
        "notes": list(decision.notes),
        "error": error,
    }


def write_human(out: TextIO, data: dict[str, Any], width: int) -> None:
    out.write(f"{printable(data['path'])}\n")
    if data["verdict"] is None:
        out.write(f"  error: {printable(data['error'] or '')}\n")
        return
    out.write(f"  verdict: {data['verdict']}, score {data['score']:.2f} "
              f"(suspicious >= {data['thresholds']['suspicious']:g}, phish >= {data['thresholds']['phish']:g})\n")
    for brand, places in data["claim"].items():
        strong = ", ".join(places["strong"]) or "-"
        weak = ", ".join(places["weak"]) or "-"
        out.write(f"  claim of {brand}: strong {strong}; weak {weak}\n")
    out.write("  decision path:\n")
    for i, step in enumerate(data["decision_path"], 1):
        lines = wrap(step, width, "       ")
        out.write(f"    {i}. {lines[0].lstrip()}\n")
        out.writelines(line + "\n" for line in lines[1:])
    out.write("  symbols (weight x strength [x factor] = score):\n")
    if not data["symbols"]:
        out.write("    none\n")
    for s in data["symbols"]:
        h = ScoredHit(symbol=s["name"], score=s["score"], reason=s["reason"], weight=s["weight"],
                      strength=s["strength"], factor=s["factor"])
        out.write(f"    {h.symbol:<26} {arithmetic(h)}\n")
        out.writelines(line + "\n" for line in wrap(h.reason, width, "      "))
    out.write(f"  links ({len(data['links'])}):\n")
    for li in data["links"]:
        where = li["registered_domain"] or li["host"] or "-"
        out.write(f"    {li['category']:<12} {printable(where):<28} {shorten(li['href'], max(20, width - 46))}\n")
    a = data["auth"]
    if a is None:
        out.write("  authentication: not checked\n")
    else:
        dkim = ", ".join(f"{d['domain']} ({d['selector']}) {d['result']}" for d in a["dkim"]) or "none"
        d = a["dmarc"]
        out.write(f"  authentication ({a['source']}):\n    spf {a['spf']}"
                  + (f" ({a['spf_domain']})" if a.get("spf_domain") else "") + "\n")
        out.write(f"    dkim {dkim}\n    arc {a['arc']}\n")
        out.write(f"    dmarc {d['result']} for {d['domain'] or '-'} (policy {d['policy'] or '-'}, "
                  f"aligned {d['aligned'] or 'no'})\n")
    for note in data["notes"]:
        out.writelines(line + "\n" for line in wrap(f"note: {note}", width, "  "))


def _stdin_items() -> list[Item]:
    try:
        return [Item(path="-", raw=sys.stdin.buffer.read())]
    except OSError as exc:
        return [Item(path="-", raw=None, error=f"unreadable: {exc}")]


def run(args: argparse.Namespace) -> int:
    if (engine := engine_or_none(args)) is None:
        return EXIT_USAGE
    envelope = envelope_of(args)
    counts: Counter[str] = Counter()
    width = columns()
    first = True
    for p in args.paths:
        items = _stdin_items() if p == "-" else iter_messages([p])
        for item in items:
            decision, error = analyse(engine, item, envelope)
            counts[level_of(decision)] += 1
            ctxs = _contexts(item.raw, envelope, engine.config) if decision is not None and item.raw else []
            data = explanation(item.path, decision, error, ctxs, engine)
            if args.json:
                sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")
            else:
                sys.stdout.write("" if first else "\n")
                write_human(sys.stdout, data, width)
            first = False
    return exit_status(counts)
