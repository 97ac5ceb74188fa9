"""The `otpguard` command: scan, explain, check-config, serve, quarantine."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from . import __version__

# Each subcommand lives in its own module with add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "scan": ("otpguard.scan", "analyse saved mail (.eml, folders, mbox, Maildir)"),
    "explain": ("otpguard.explain", "why one message got its verdict: claim, path, symbols, links, authentication"),
    "check-config": ("otpguard.checkconfig", "validate a configuration file"),
    "doctor": ("otpguard.doctor", "check the installation: Postfix, socket, files, DNS"),
    "serve": ("otpguard.mta.serve", "run the milter"),
    "quarantine": ("otpguard.mta.quarantine", "list, show, release or delete held messages"),
}


def build_parser(chosen: str | None = None, *, every: bool = False) -> tuple[argparse.ArgumentParser, Any]:
    """The argument parser with the chosen subcommand's options (every subcommand's with every,
    for the man page and shell completion: tools/gen_docs.py); returns it and the chosen module."""
    parser = argparse.ArgumentParser(prog="otpguard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"otpguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module = None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if every or name == chosen:  # import only what runs: serve pulls in libmilter, scan does not
            mod = importlib.import_module(module_name)
            mod.add_arguments(p)
            if name == chosen:
                module = mod
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser, module = build_parser(chosen)
    args = parser.parse_args(argv)
    assert module is not None
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
