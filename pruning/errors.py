"""User-facing errors.

A ``PruneScopeError`` carries a message meant for the person using the CLI or
the app: it says what was wrong and, where possible, what to do instead. The
CLI prints it on one line and exits non-zero; the app shows it in place.
"""


class PruneScopeError(Exception):
    """An error caused by the user's input or environment, with a clear message."""


def check(condition: bool, message: str) -> None:
    """Raise ``PruneScopeError(message)`` unless ``condition`` holds."""
    if not condition:
        raise PruneScopeError(message)
