"""Text that came from events (model names, labels, reasons) made safe to print on one line."""

from __future__ import annotations

__all__ = ["printable"]


def printable(text: str) -> str:
    """``text`` with every character that is not printable written as its Python escape.

    Line breaks (``\\n``, ``\\r``, U+2028 ...), other control characters (an
    ANSI escape, a NUL), format characters (a bidi override) and unassigned
    code points become ``\\n``, ``\\x1b``, ``\\u202e`` and so on, so that a model
    name can neither break a log line or a table row into two nor repaint the
    terminal. Printable text, non-ASCII letters included, is returned as it is.

    Examples
    --------
    >>> print(printable("bot\\n2024-01-01 INFO forged line\\x1b[2J"))
    bot\\n2024-01-01 INFO forged line\\x1b[2J
    >>> printable("modèle-ü 1"), printable("evil\\u202etxt")
    ('modèle-ü 1', 'evil\\\\u202etxt')
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)
