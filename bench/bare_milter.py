"""A pymilter milter that does nothing: the floor under any Python milter (benchmark only).

It negotiates the protocol steps otpguard negotiates (the same no-reply steps, `data`
answered, eoh and unknown skipped, the same actions), runs on the CPUs the given otpguard
config's milter.cpu_affinity names (as otpguard would), answers every step with CONTINUE and
never looks at the message. bench/postfix.py runs it beside otpguard, so the
ratio of a milter that costs nothing but pymilter and libmilter is measured in the same run.

    .venv/bin/python bench/bare_milter.py --socket unix:/path [--config otpguard.toml]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import Milter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "milter"))
from otpguard.mta import adapter  # noqa: E402
from otpguard.mta.adapter import NEEDED_ACTIONS  # noqa: E402
from otpguard.config import load_config  # noqa: E402
from otpguard.mta.serve import pin_cpus  # noqa: E402


class Bare(Milter.Base):
    """Every step otpguard asks for, doing nothing."""

    def negotiate(self, opts: list[int]) -> int:
        self._actions = opts[0] & NEEDED_ACTIONS
        self._protocol = opts[1] & ~self.protocol_mask()
        opts[0], opts[1], opts[2], opts[3] = self._actions, self._protocol, 0, 0
        return Milter.CONTINUE

    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, heloname: str) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def envfrom(self, mail_from: bytes, *params: bytes) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def envrcpt(self, rcpt: bytes, *params: bytes) -> int:
        return Milter.CONTINUE

    def data(self) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name: bytes, value: bytes) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        return Milter.CONTINUE

    def eom(self) -> int:
        return Milter.CONTINUE


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True, help="unix:/path or inet:HOST:PORT (Postfix spelling)")
    ap.add_argument("--config", help="otpguard config: only milter.cpu_affinity is used")
    args = ap.parse_args()
    cpus = pin_cpus(load_config(args.config).milter.cpu_affinity) if args.config else None

    def listening() -> None:
        if args.socket.startswith("unix:"):
            os.chmod(args.socket[5:], 0o666)  # the benchmark's Postfix runs as user postfix
        print(f"event=listening milter=bare cpus={','.join(map(str, cpus)) if cpus else 'any'}", file=sys.stderr,
              flush=True)

    # otpguard's own libmilter set-up (same callbacks, flags and timeout), with this class.
    adapter.OtpGuardMilter = Bare  # type: ignore[misc]
    adapter.run(args.socket, on_listening=listening)
    return 0


if __name__ == "__main__":
    sys.exit(main())
