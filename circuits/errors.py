"""Errors a user can cause. Their messages are one line, meant to be shown as they are.

A message speaks Python (``force=True``); where the command line has its own words for the same
advice (``--force``, ``--out``), the error carries them as ``cli_message``, which `lenscli` shows.
Nothing heavy is imported here.
"""

from __future__ import annotations


class CircuitsError(Exception):
    """Base class: bad input from the user (config, checkpoint, CLI argument)."""

    def __init__(self, message: str = "", *, cli: str | None = None):
        super().__init__(message)
        self.cli_message = message if cli is None else cli


class ConfigError(CircuitsError, ValueError):
    """An unknown config key or an impossible / out-of-range value."""


class CheckpointError(CircuitsError):
    """A missing, incomplete or corrupt checkpoint directory, or one that would be overwritten."""
