"""Errors the core raises: a bad brand profile, named by file and key like a config error."""
from __future__ import annotations

from pathlib import Path


class ProfileError(Exception):
    """A bad brand profile (or a reference to one): names the file and the key.

    otpguard.config.ConfigError is a ProfileError too, so one `except` serves both.
    """

    def __init__(self, file: str | Path, key: str, problem: str) -> None:
        self.file, self.key, self.problem = str(file), key, problem
        super().__init__(f"{file}: {key}: {problem}" if key else f"{file}: {problem}")
