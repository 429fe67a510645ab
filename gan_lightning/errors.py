"""Errors that carry a message meant for the user: what is wrong and how to fix it."""


class ConfigError(ValueError):
    """An invalid option or combination of options."""


class DataError(RuntimeError):
    """Data that is missing, unreadable or unusable."""
