"""`otpguard check-config [FILE]`: validate a configuration and its brand profiles."""
from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_chosen
from .preflight import config_problems


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE",
                        help="configuration file (TOML); default: $OTPGUARD_CONFIG, else "
                             "/etc/otpguard/otpguard.toml, else the packaged default")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_chosen(args.file, lambda text: print(f"otpguard: {text}", file=sys.stderr))
    except ConfigError as exc:
        print(f"otpguard: config error: {exc}", file=sys.stderr)
        return 2
    brands = ", ".join(b.id for b in cfg.brands)
    lists = cfg.policy.lists
    print(f"{cfg.path}: OK (brands: {brands}; socket {cfg.milter.socket}; "
          f"allow {len(lists.allow)}, deny {len(lists.deny)} list entries)")
    # What `otpguard doctor` checks of the configuration alone: warnings, the file still loads.
    for problem in config_problems(cfg):
        print(f"warning: {problem.line()}", file=sys.stderr)
    return 0
