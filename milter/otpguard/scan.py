"""`otpguard scan`: run the engine over saved mail (.eml files, folders, mbox files, Maildirs).

Exit status, like `spamc -c`, so scripts can branch on it:
  0  every message is clean (genuine counts as clean)
  1  at least one message is suspicious or phish
  2  usage or configuration error (nothing scanned)
  3  some input could not be read or analysed; this wins over 1, as grep's 2 does: the answer is
     incomplete, and the output still lists every message that was scanned
"""
from __future__ import annotations

import argparse
import json
import mailbox
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from .config import ConfigError, load_chosen
from .core.model import Decision, Envelope
from .ops.terminal import columns, printable, wrap

EXIT_CLEAN, EXIT_FLAGGED, EXIT_USAGE, EXIT_UNREADABLE = 0, 1, 2, 3
LEVEL_CHOICES = ("phish", "suspicious", "clean", "genuine", "error")
# Files in mail folders that are not mail: our corpus notes, Thunderbird's summary indexes.
_NOT_MAIL = ("MANIFEST.tsv", "SOURCES.md", "README.md")
_NOT_MAIL_SUFFIXES = (".msf",)
SYMBOL_WIDTH = 26
TOP_SYMBOLS = 10


@dataclass(frozen=True, slots=True)
class Item:
    path: str
    raw: bytes | None
    error: str | None = None


def is_maildir(path: Path) -> bool:
    return all((path / d).is_dir() for d in ("cur", "new", "tmp"))


def is_mbox(path: Path) -> bool:
    """An mbox is recognised by its content: the first line starts with "From " (RFC 4155),
    whatever the file is called (Thunderbird's Inbox, /var/mail/$USER, foo.mbox)."""
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


def iter_messages(paths: list[str]) -> Iterator[Item]:
    """Every message under the given paths; unreadable input yields an error item."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            if is_maildir(path):
                yield from _maildir(path)
                continue
            for root, dirs, files in os.walk(path, onerror=None):
                dirs.sort()
                rp = Path(root)
                if rp != path and is_maildir(rp):
                    yield from _maildir(rp)
                    dirs[:] = []
                    continue
                for name in sorted(files):
                    if name.startswith(".") or name in _NOT_MAIL or name.endswith(_NOT_MAIL_SUFFIXES):
                        continue
                    yield from _file(rp / name)
        elif path.exists():
            yield from _file(path)
        else:
            yield Item(path=str(path), raw=None, error="no such file or directory")


def _unreadable(path: Path, exc: Exception) -> Item:
    return Item(path=str(path), raw=None, error=f"unreadable: {getattr(exc, 'strerror', None) or exc}")


def _file(path: Path) -> Iterator[Item]:
    try:
        if is_mbox(path):
            box = mailbox.mbox(str(path), create=False)
            keys = list(box.iterkeys())
            # One message saved with its "From " line (a .eml from an mbox) keeps its plain path.
            for i, key in enumerate(keys):
                yield Item(path=f"{path}#{i + 1}" if len(keys) > 1 else str(path), raw=box.get_bytes(key))
            return
        yield Item(path=str(path), raw=path.read_bytes())
    except (OSError, mailbox.Error) as exc:
        yield _unreadable(path, exc)


def _maildir(path: Path) -> Iterator[Item]:
    """Messages in new/ then cur/, by file name, with the path as it is on disk. tmp/ holds
    deliveries in progress (Maildir's rule: never read them)."""
    for sub in ("new", "cur"):
        folder = path / sub
        try:
            names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
        except OSError as exc:
            yield _unreadable(folder, exc)
            continue
        for name in names:
            file = folder / name
            try:
                yield Item(path=str(file), raw=file.read_bytes())
            except OSError as exc:
                yield _unreadable(file, exc)


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
        out["auth"] = auth_json(decision)
    return out


def auth_json(decision: Decision) -> dict | None:
    """The authentication results of a decision as JSON (None when nothing was checked)."""
    a = decision.auth
    if a is None:
        return None
    return {
        "source": a.source, "spf": a.spf, "spf_domain": a.spf_domain,
        "dkim": [{"domain": d.domain, "selector": d.selector, "result": d.result} for d in a.dkim],
        "arc": a.arc,
        "dmarc": {"result": a.dmarc, "policy": a.dmarc_policy, "aligned": a.dmarc_aligned, "domain": a.from_domain},
    }


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by scan and explain: the config and how authentication is checked."""
    parser.add_argument("--config", metavar="FILE",
                        help="configuration file; default: $OTPGUARD_CONFIG, else /etc/otpguard/otpguard.toml, "
                             "else the packaged default")
    parser.add_argument("--verify", action="store_true", help="check SPF, DKIM, DMARC and ARC by DNS")
    parser.add_argument("--dns", metavar="HOST:PORT", help="DNS server for --verify (default: the config's)")
    parser.add_argument("--client-ip", metavar="IP", help="SMTP client address for SPF")
    parser.add_argument("--helo", metavar="NAME", help="HELO name for SPF")
    parser.add_argument("--mail-from", metavar="ADDR", help="envelope sender for SPF")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help=".eml files, folders, mbox files (recognised by content) or Maildirs")
    parser.add_argument("--json", action="store_true", help="one JSON object per message")
    add_engine_arguments(parser)
    parser.add_argument("--all", action="store_true", help="human output: list clean messages too")
    parser.add_argument("--trusted-hops", type=int, metavar="N",
                        help="Received fields allowed above trusted Authentication-Results (overrides "
                             "auth.trusted_hops): mail saved from a mailbox carries the fields your own hosts "
                             "added after the milter saw it")
    parser.add_argument("--only", action="append", choices=LEVEL_CHOICES, metavar="LEVEL",
                        help="list only messages at this level (phish, suspicious, clean, genuine, error); "
                             "repeat for several; the summary and exit status still count every message")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing; the exit status tells")


def engine_or_none(args: argparse.Namespace):
    """build_engine, or None once the configuration error is printed (the caller exits 2)."""
    try:
        return build_engine(args)
    except ConfigError as exc:
        print(f"otpguard: config error: {exc}", file=sys.stderr)
        return None


def build_engine(args: argparse.Namespace):
    """An Engine from the scan arguments (config file, --verify, --dns)."""
    from dataclasses import replace

    from .engine import Engine

    announce = None if getattr(args, "quiet", False) else (lambda text: print(f"otpguard: {text}", file=sys.stderr))
    cfg = load_chosen(args.config, announce)
    if args.verify and args.dns:
        host, _, port = args.dns.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(args.config or cfg.path, "--dns", f"must be HOST:PORT, got {args.dns!r}")
        cfg = replace(cfg, auth=replace(cfg.auth, nameservers=(host.strip("[]"),), port=int(port)))
    hops = getattr(args, "trusted_hops", None)
    if hops is not None:
        if hops < 0:
            raise ConfigError(args.config or cfg.path, "--trusted-hops", f"must be >= 0, got {hops}")
        cfg = replace(cfg, auth=replace(cfg.auth, trusted_hops=hops))
    return Engine(cfg, verify=bool(args.verify))


def envelope_of(args: argparse.Namespace) -> Envelope:
    return Envelope(client_ip=args.client_ip, helo=args.helo, mail_from=args.mail_from)


def level_of(decision: Decision | None) -> str:
    """The listing level: genuine is shown apart from clean, an unanalysable message is error."""
    if decision is None:
        return "error"
    return "genuine" if decision.genuine else decision.level.value


def analyse(engine, item: Item, envelope: Envelope) -> tuple[Decision | None, str | None]:
    """The decision for one item, or its error; an internal error never stops the scan."""
    if item.raw is None:
        return None, item.error
    try:
        return engine.analyse(item.raw, envelope), None
    except Exception as exc:  # noqa: BLE001 - one bad message must not stop the scan
        return None, f"internal error: {type(exc).__name__}: {exc}"


def write_human(out: TextIO, path: str, decision: Decision | None, error: str | None, width: int) -> None:
    """One message: level, score and path, then each scoring symbol with its reason, wrapped."""
    level = level_of(decision)
    if decision is None:
        out.write(f"{'error':<11} {'-':>7}  {printable(path)}\n")
        out.writelines(line + "\n" for line in wrap(error or "", width, "    "))
        return
    out.write(f"{level:<11} {decision.score:7.2f}  {printable(path)}\n")
    # Reasons in a column beside the symbols when there is room for one, else under each symbol.
    column = 4 + SYMBOL_WIDTH + 1 + 8 + 2
    indent = " " * column if width - column >= 40 else " " * 6
    for h in decision.hits:
        if h.score == 0:
            continue
        head = f"    {h.symbol:<{SYMBOL_WIDTH}} {h.score:+8.2f}"
        lines = wrap(h.reason, width, indent)
        if len(indent) == column:
            out.write(head + "  " + lines[0][column:] + "\n")
            lines = lines[1:]
        else:
            out.write(head + "\n")
        out.writelines(line + "\n" for line in lines)


def summary(counts: Counter[str], symbols: Counter[str], width: int = 100) -> list[str]:
    """The closing lines: messages per level, then the symbols seen in most messages."""
    total = sum(counts.values())
    parts = ", ".join(f"{k} {counts[k]}" for k in LEVEL_CHOICES if counts[k])
    lines = [f"{total} message{'s' if total != 1 else ''}: {parts or 'none'}"]
    if symbols:
        top = ", ".join(f"{name} {n}" for name, n in sorted(symbols.items(), key=lambda x: (-x[1], x[0]))[:TOP_SYMBOLS])
        lines += wrap(f"top symbols: {top}", width, "")
    return lines


def exit_status(counts: Counter[str]) -> int:
    if counts["error"]:
        return EXIT_UNREADABLE
    if counts["phish"] or counts["suspicious"]:
        return EXIT_FLAGGED
    return EXIT_CLEAN


def run(args: argparse.Namespace) -> int:
    if (engine := engine_or_none(args)) is None:
        return EXIT_USAGE
    envelope = envelope_of(args)
    counts: Counter[str] = Counter()
    symbols: Counter[str] = Counter()
    out = sys.stdout
    width = columns()
    only = set(args.only or ())
    listed = 0
    for item in iter_messages(args.paths):
        decision, error = analyse(engine, item, envelope)
        level = level_of(decision)
        counts[level] += 1
        if decision is not None:
            symbols.update({h.symbol for h in decision.hits if h.score > 0})
        if args.quiet:
            continue
        if only:
            shown = level in only
        else:
            shown = args.json or args.all or level != "clean"
        if not shown:
            continue
        listed += 1
        if args.json:
            out.write(json.dumps(decision_json(item.path, decision, error), ensure_ascii=False) + "\n")
        else:
            write_human(out, item.path, decision, error, width)
    if not args.json and not args.quiet:
        out.write("\n" if listed else "")
        out.writelines(line + "\n" for line in summary(counts, symbols, width))
    return exit_status(counts)
