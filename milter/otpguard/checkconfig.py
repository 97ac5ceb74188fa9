"""`otpguard check-config FILE`: validate a configuration and its brand profiles."""
from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="configuration file (TOML)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        print(f"otpguard: config error: {exc}", file=sys.stderr)
        return 2
    brands = ", ".join(b.id for b in cfg.brands)
    print(f"{args.file}: OK (brands: {brands}; socket {cfg.milter.socket})")
    return 0
