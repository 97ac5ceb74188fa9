"""Helpers and fixtures shared by the tests: real servers on loopback."""
