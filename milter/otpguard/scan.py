"""`otpguard scan`: run the engine over saved mail (.eml files, folders, mbox files, Maildirs)."""
from __future__ import annotations

import argparse
import json
import mailbox
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .config import ConfigError, load_config
from .core.model import Decision, Envelope

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "conf" / "otpguard.toml"


@dataclass(frozen=True, slots=True)
class Item:
    path: str
    raw: bytes | None
    error: str | None = None


def iter_messages(paths: list[str]) -> Iterator[Item]:
    """Every message under the given paths; unreadable input yields an error item."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            if all((path / d).is_dir() for d in ("cur", "new", "tmp")):
                yield from _maildir(path)
                continue
            for root, dirs, files in os.walk(path):
                dirs.sort()
                rp = Path(root)
                if rp != path and all((rp / d).is_dir() for d in ("cur", "new", "tmp")):
                    yield from _maildir(rp)
                    dirs[:] = []
                    continue
                for name in sorted(files):
                    if name.startswith(".") or name in ("MANIFEST.tsv", "SOURCES.md", "README.md"):
                        continue
                    yield from _file(rp / name)
        elif path.exists():
            yield from _file(path)
        else:
            yield Item(path=str(path), raw=None, error="no such file or directory")


def _file(path: Path) -> Iterator[Item]:
    try:
        if path.suffix.lower() == ".mbox" or path.name.lower() == "mbox":
            box = mailbox.mbox(str(path), create=False)
            for i, key in enumerate(box.iterkeys()):
                yield Item(path=f"{path}#{i + 1}", raw=box.get_bytes(key))
            return
        yield Item(path=str(path), raw=path.read_bytes())
    except (OSError, mailbox.Error) as exc:
        yield Item(path=str(path), raw=None, error=f"unreadable: {getattr(exc, 'strerror', None) or exc}")


def _maildir(path: Path) -> Iterator[Item]:
    try:
        box = mailbox.Maildir(str(path), create=False)
        for key in sorted(box.iterkeys()):
            yield Item(path=f"{path}/{key}", raw=box.get_bytes(key))
    except (OSError, mailbox.Error) as exc:
        yield Item(path=str(path), raw=None, error=f"unreadable Maildir: {exc}")


def decision_json(path: str, decision: Decision | None, error: str | None) -> dict:
    """The JSON object of one scanned message."""
    if decision is None:
        return {"path": path, "verdict": None, "score": None, "genuine": False, "analysed": False,
                "symbols": [], "error": error}
    out = {
        "path": path, "verdict": decision.level.value, "score": decision.score, "genuine": decision.genuine,
        "analysed": decision.analysed, "brand": decision.brand, "code_mail": decision.code_mail,
        "symbols": [{"name": h.symbol, "score": h.score, "reason": h.reason} for h in decision.hits],
        "error": error,
    }
    if decision.auth is not None:
        a = decision.auth
        out["auth"] = {
            "source": a.source, "spf": a.spf,
            "dkim": [{"domain": d.domain, "selector": d.selector, "result": d.result} for d in a.dkim],
            "arc": a.arc,
            "dmarc": {"result": a.dmarc, "policy": a.dmarc_policy, "aligned": a.dmarc_aligned, "domain": a.from_domain},
        }
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help=".eml files, folders, mbox files or Maildirs")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="configuration file")
    parser.add_argument("--verify", action="store_true", help="check SPF, DKIM, DMARC and ARC by DNS")
    parser.add_argument("--dns", metavar="HOST:PORT", help="DNS server for --verify (default: the config's)")
    parser.add_argument("--client-ip", help="SMTP client address for SPF")
    parser.add_argument("--helo", help="HELO name for SPF")
    parser.add_argument("--mail-from", help="envelope sender for SPF")
    parser.add_argument("--all", action="store_true", help="human output: list clean messages too")
    parser.add_argument("--trusted-hops", type=int, metavar="N",
                        help="Received fields allowed above trusted Authentication-Results (overrides "
                             "auth.trusted_hops): mail saved from a mailbox carries the fields your own hosts "
                             "added after the milter saw it")


def build_engine(args: argparse.Namespace):
    """An Engine from the scan arguments (config file, --verify, --dns)."""
    from dataclasses import replace

    from .engine import Engine

    cfg = load_config(args.config)
    if args.verify and args.dns:
        host, _, port = args.dns.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(args.config, "--dns", f"must be HOST:PORT, got {args.dns!r}")
        cfg = replace(cfg, auth=replace(cfg.auth, nameservers=(host.strip("[]"),), port=int(port)))
    hops = getattr(args, "trusted_hops", None)
    if hops is not None:
        if hops < 0:
            raise ConfigError(args.config, "--trusted-hops", f"must be >= 0, got {hops}")
        cfg = replace(cfg, auth=replace(cfg.auth, trusted_hops=hops))
    return Engine(cfg, verify=bool(args.verify))


def run(args: argparse.Namespace) -> int:
    try:
        engine = build_engine(args)
    except ConfigError as exc:
        print(f"otpguard: config error: {exc}", file=sys.stderr)
        return 2
    envelope = Envelope(client_ip=args.client_ip, helo=args.helo, mail_from=args.mail_from)
    counts: Counter[str] = Counter()
    out = sys.stdout
    for item in iter_messages(args.paths):
        decision, error = None, item.error
        if item.raw is not None:
            try:
                decision = engine.analyse(item.raw, envelope)
            except Exception as exc:  # noqa: BLE001 - one bad message must not stop the scan
                error = f"internal error: {type(exc).__name__}: {exc}"
        counts[decision.level.value if decision else "error"] += 1
        if args.json:
            out.write(json.dumps(decision_json(item.path, decision, error), ensure_ascii=False) + "\n")
        elif decision is None:
            out.write(f"error       -      {item.path}: {error}\n")
        elif args.all or decision.level.value != "clean" or decision.genuine:
            tag = "genuine" if decision.genuine else decision.level.value
            reasons = "; ".join(f"{h.symbol}({h.reason})" for h in decision.hits if h.score > 0)[:300]
            out.write(f"{tag:<11} {decision.score:6.2f} {item.path}  {reasons}\n")
    if not args.json:
        total = sum(counts.values())
        summary = ", ".join(f"{k} {counts[k]}" for k in ("phish", "suspicious", "clean", "error") if counts[k])
        out.write(f"{total} messages: {summary or 'none'}\n")
    return 1 if counts["error"] and counts["error"] == sum(counts.values()) else 0
