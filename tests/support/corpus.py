"""The development corpus as the verdict tests read it: files by label, and the envelope a
message records about its own delivery (the production path, beside the empty envelope)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

from otpguard.core.headerfields import split_address
from otpguard.core.mime import header_fields_only
from otpguard.core.model import Envelope

SPAM_FOLDERS = ("spam", "spam_2")
HAM_FOLDERS = ("easy_ham", "easy_ham_2", "hard_ham")

# "from HELO (RDNS [IP])" as Postfix, Sendmail and most MTAs write it.
_RECEIVED = re.compile(r"^\s*from\s+(\S+)\s+\(([^\s()\[]*)\s*\[(?:ipv6:)?([0-9a-fA-F.:]+)\]")


def manifest(corpus: Path) -> list[tuple[str, str]]:
    """(file relative to the corpus, label) of every labelled message, in MANIFEST order."""
    path = corpus / "MANIFEST.tsv"
    with path.open(newline="", encoding="utf-8") as fh:
        return [(row["file"], row["label"]) for row in csv.DictReader(fh, delimiter="\t")]


def traffic(corpus: Path, folders: tuple[str, ...]) -> list[str]:
    """Files of traffic/ folders, relative to the corpus, sorted."""
    out = []
    for folder in folders:
        out += sorted(f"traffic/{folder}/{p.name}" for p in (corpus / "traffic" / folder).iterdir() if p.is_file())
    return out


def recorded_envelope(raw: bytes) -> Envelope:
    """The envelope the message records: MAIL FROM from its Return-Path, and the client (IP,
    HELO, reverse name) of the newest Received field that names one, as the receiving MTA
    would have passed them to the milter. Empty parts where the message records nothing."""
    if raw.startswith(b"From ") and b"\n" in raw[:1000]:
        raw = raw.split(b"\n", 1)[1]
    msg = header_fields_only(raw)
    mail_from = None
    for value in msg.get_all("Return-Path") or []:
        pairs = split_address(str(value))
        mail_from = pairs[0][1] if pairs else ""
        break
    client_ip = helo = client_name = None
    for value in msg.get_all("Received") or []:
        m = _RECEIVED.match(" ".join(str(value).split()))
        if m:
            helo, rdns, client_ip = m.group(1), m.group(2), m.group(3)
            # Postfix passes "unknown" (or "[ip]") when the client has no verified name: none.
            name = rdns.rstrip(".")
            client_name = None if not name or name == "unknown" or name.startswith("[") else name
            break
    return Envelope(client_ip=client_ip, client_name=client_name, helo=helo, mail_from=mail_from)
