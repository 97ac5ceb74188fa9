"""otpguard: a Postfix milter against brand security-code and sign-in lures."""

__version__ = "0.1.0"
