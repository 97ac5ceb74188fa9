"""The `otpguard` command: scan, explain, check-config, serve, quarantine."""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# Each subcommand lives in its own module with add_arguments(parser) and run(args) -> int.
SUBCOMMANDS = {
    "scan": ("otpguard.scan", "analyse saved mail (.eml, folders, mbox, Maildir)"),
    "explain": ("otpguard.explain", "why one message got its verdict: claim, path, symbols, links, authentication"),
    "check-config": ("otpguard.checkconfig", "validate a configuration file"),
    "serve": ("otpguard.mta.serve", "run the milter"),
    "quarantine": ("otpguard.mta.quarantine", "list, show, release or delete held messages"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otpguard", description=__doc__)
    parser.add_argument("--version", action="version", version=f"otpguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:  # import only what runs: serve pulls in libmilter, scan does not
            module = importlib.import_module(module_name)
            module.add_arguments(p)
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
