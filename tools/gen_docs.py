"""Generate the man pages and shell completions from the code, so they cannot drift.

  otpguard(1)        from the argument parser (otpguard.cli.build_parser, every subcommand)
  otpguard.toml(5)   from the shipped, fully commented configuration (conf/otpguard.toml: every
                     key with its default and comment; tests/test_config.py keeps it equal to
                     what otpguard.config reads)
  completion/        bash and zsh, by shtab from the same parser

`make man` writes them; tests/test_generated_docs.py fails when a committed file differs from
what this script produces (run `make man` and commit).
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "milter"))

from otpguard import __version__  # noqa: E402
from otpguard.cli import SUBCOMMANDS, build_parser  # noqa: E402

OUTPUTS = {
    "man/otpguard.1": "man1",
    "man/otpguard.toml.5": "man5",
    "completion/otpguard.bash": "bash",
    "completion/_otpguard": "zsh",
}
SUMMARY = "Postfix milter against mail impersonating a brand's security-code and sign-in messages"


def roff(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line starting with a control."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln[:1] in (".", "'") else ln for ln in text.split("\n"))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line, wrapped between options (an option and its argument stay together)."""
    text = re.sub(r"\s+", " ", parser.format_usage().removeprefix("usage: ").strip())
    words = re.findall(r"\[[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*\]|\S+", text)
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > 76:
            lines.append(line)
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line])


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            names = ", ".join(f"\\fB{roff(o)}\\fR" for o in action.option_strings)
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                names += f" \\fI{roff(str(metavar))}\\fR"
        else:
            names = f"\\fI{roff(str(action.metavar or action.dest))}\\fR"
        help_text = action.help or ""
        if action.choices and not isinstance(action.choices, dict) and not action.metavar:
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        out += [".TP", names, roff(help_text)]
    return out


def _doc_paragraphs(module_name: str) -> list[str]:
    """A subcommand module's docstring after its first line, as roff paragraphs."""
    doc = importlib.import_module(module_name).__doc__ or ""
    rest = doc.strip().split("\n", 1)[1].strip() if "\n" in doc.strip() else ""
    out = []
    for para in re.split(r"\n\s*\n", rest):
        lines = para.split("\n")
        if any(ln.startswith("  ") for ln in lines):  # an indented block stays as written
            out += [".PP", ".nf", roff(para), ".fi"]
        else:
            out += [".PP", roff(" ".join(ln.strip() for ln in lines))]
    return out


def man1() -> str:
    parser, _ = build_parser(every=True)
    lines = [
        f'.TH OTPGUARD 1 "" "otpguard {__version__}" "otpguard manual"',
        ".SH NAME", f"otpguard \\- {roff(SUMMARY)}",
        ".SH SYNOPSIS", ".B otpguard", "[\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        roff("otpguard runs as a Postfix milter (otpguard serve) and as command-line tools for saved "
             "mail (scan, explain), the configuration (check-config) and the hold queue (quarantine). "
             "Generated from the program's argument parser."),
        ".SH COMMANDS",
    ]
    subs = _subparsers(parser)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sp = subs[name]
        lines += [f'.SS "otpguard {name}"', roff(help_text[:1].upper() + help_text[1:] + "."),
                  ".PP", ".nf", roff(_usage(sp)), ".fi"]
        lines += _doc_paragraphs(module_name)
        lines += _options(sp)
        for sub_name, ssp in _subparsers(sp).items():
            lines += [".PP", f"\\fBotpguard {name} {sub_name}\\fR: {roff(ssp.description or '')}",
                      ".PP", ".nf", roff(_usage(ssp)), ".fi"]
            lines += _options(ssp)
    lines += [
        ".SH EXIT STATUS",
        roff("scan and explain: 0 every message clean, 1 a message suspicious or phish, 2 usage or "
             "configuration error, 3 input unreadable (3 wins over 1). check-config: 0 valid, 2 invalid. "
             "quarantine: 0 done, 1 a Postfix tool failed or permission denied, 2 configuration error."),
        ".SH ENVIRONMENT",
        ".TP", "\\fBOTPGUARD_CONFIG\\fR",
        roff("The configuration file when --config is not given."),
        ".SH FILES",
        ".TP", "\\fI/etc/otpguard/otpguard.toml\\fR",
        roff("The system configuration, used when neither --config nor OTPGUARD_CONFIG names one; "
             "without it the default shipped inside the package is used. Every command that picks a "
             "file this way says which on standard error (serve logs it)."),
        ".TP", "\\fI/etc/otpguard/brands/\\fR", roff("Brand profiles (amazon.toml)."),
        ".SH TEST MESSAGE",
        roff("A message whose body holds the token OTPGUARD-TEST-PHISH is phish with the symbol "
             "TEST_PHISH, like SpamAssassin's GTUBE: send one through Postfix to see the whole chain work."),
        ".SH SEE ALSO",
        "\\fBotpguard.toml\\fR(5), \\fBpostfix\\fR(1), \\fBpostsuper\\fR(1), \\fBpostcat\\fR(1), "
        "\\fBpostqueue\\fR(1); /usr/share/doc/otpguard/admin-guide.md",
    ]
    return "\n".join(lines) + "\n"


def _config_entries(text: str) -> list[tuple[str, list[str]]]:
    """(section, roff lines) from the commented config: comments before a key describe it."""
    sections: list[tuple[str, list[str]]] = []
    intro: list[str] = []
    comments: list[str] = []
    body: list[str] = intro
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            if comments and body is not intro:
                body += [".PP", roff(" ".join(comments))]
            comments = []
            continue
        if line.startswith("#"):
            comments.append(line.lstrip("#").strip())
            continue
        if line.startswith("["):
            if comments:
                body += [".PP", roff(" ".join(comments))]
                comments = []
            body = []
            sections.append((line, body))
            continue
        key, _, rest = line.partition("=")
        value, _, trailing = rest.partition(" #")
        desc = " ".join(comments + ([trailing.strip()] if trailing.strip() else []))
        body += [".TP", f"\\fB{roff(key.strip())}\\fR = {roff(value.strip())}"] + ([roff(desc)] if desc else [])
        comments = []
    if comments:
        body += [".PP", roff(" ".join(comments))]
    return [("", intro)] + sections


def man5() -> str:
    text = (ROOT / "conf" / "otpguard.toml").read_text()
    lines = [
        f'.TH OTPGUARD.TOML 5 "" "otpguard {__version__}" "otpguard manual"',
        ".SH NAME", "otpguard.toml \\- otpguard configuration file",
        ".SH SYNOPSIS", "/etc/otpguard/otpguard.toml",
        ".SH DESCRIPTION",
        roff("The configuration of otpguard(1), in TOML. Every key is shown below with its default "
             "value; a key that is not listed is an error, and a bad value names the file and the key "
             "(otpguard check-config). Relative paths (general.brands) are relative to the file. "
             "Generated from the shipped, commented configuration file."),
    ]
    for section, body in _config_entries(text):
        if section:
            lines += [f'.SS "{roff(section)}"']
        lines += body
    lines += [".SH FILES", ".TP", "\\fI/etc/otpguard/otpguard.toml\\fR", roff("This file."),
              ".TP", "\\fI/etc/otpguard/brands/amazon.toml\\fR",
              roff("The shipped brand profile: names, domains, phone numbers and lure vocabulary."),
              ".SH SEE ALSO", "\\fBotpguard\\fR(1)"]
    return "\n".join(lines) + "\n"


def _all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for sp in _subparsers(parser).values():
        out += _all_parsers(sp)
    return out


def completion(shell: str) -> str:
    import shtab

    parser, _ = build_parser(every=True)
    # File and folder arguments complete as paths (shtab reads .complete on each action).
    for p in _all_parsers(parser):
        for action in p._actions:
            if action.metavar in ("FILE", "PATH"):
                action.complete = shtab.FILE  # type: ignore[attr-defined]
            elif action.metavar == "DIR":
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    return shtab.complete(parser, shell=shell)


def generate(kind: str) -> str:
    return {"man1": man1, "man5": man5, "bash": lambda: completion("bash"), "zsh": lambda: completion("zsh")}[kind]()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a committed file is not current")
    args = ap.parse_args()
    stale = []
    for rel, kind in OUTPUTS.items():
        path = ROOT / rel
        text = generate(kind)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(rel)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {rel}")
    if stale:
        print(f"not current (run make man): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
