"""Errors that carry a message meant for the user: what is wrong and how to fix it."""


class ConfigError(ValueError):
    """An invalid option or combination of options."""


class DataError(RuntimeError):
    """Data that is missing, unreadable or unusable."""


def require_positive(**values: float | None) -> None:
    """Raise `ConfigError` naming the first value that is not positive (None means unset and passes)."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")
