"""Errors a user can cause. Their messages are one line, meant to be shown as they are."""


class CircuitsError(Exception):
    """Base class: bad input from the user (config, checkpoint, CLI argument)."""


class ConfigError(CircuitsError, ValueError):
    """An unknown config key or an impossible / out-of-range value."""


class CheckpointError(CircuitsError):
    """A missing, incomplete or corrupt checkpoint directory, or one that would be overwritten."""
