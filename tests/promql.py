"""Reading PromQL in tests: which series an expression selects, with which matchers."""

from __future__ import annotations

import re

__all__ = ["selectors"]

KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
    "inf", "nan",
}  # fmt: skip

_TOKEN = re.compile(
    r"""
      (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<grouping>(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))
    | (?P<range>\[[^\]]*\])
    | (?P<selector>(?P<name>[a-zA-Z_:][\w:]*)?\s*\{(?P<matchers>[^}]*)\})
    | (?P<number>(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+)[a-z]*)
    | (?P<word>[a-zA-Z_:][\w:]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
#: What follows a function or an aggregation's name: its arguments, or first its grouping clause.
_CALL = re.compile(r"\s*(?:\(|(?:by|without)\s*\()")
_MATCHER = re.compile(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')


def selectors(expr: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """The vector selectors of a PromQL expression: (metric name, [(label, op, value), ...]).

    A small tokenizer, enough for rule files: strings, comments, grouping clauses (``by (...)``), ranges and
    numbers with units are skipped; a word followed by ``(`` is a function or an aggregation.

    >>> selectors('sum without (instance) (rate(foo_total{a="x", b=~"y|z"}[5m])) > 0.5 and on (job) bar offset 1d')
    [('foo_total', [('a', '=', 'x'), ('b', '=~', 'y|z')]), ('bar', [])]
    """
    found = []
    for match in _TOKEN.finditer(expr):
        if match["selector"] is not None:
            text = match["matchers"]
            read = "".join(matcher.group(0) for matcher in _MATCHER.finditer(text))
            assert read.strip() == text.strip(), f"cannot read the matchers {text!r} in {expr!r}"
            found.append((match["name"] or "", _MATCHER.findall(text)))
        elif match["word"] is not None:
            word = match["word"]
            if word.lower() in KEYWORDS or _CALL.match(expr, match.end()):
                continue
            found.append((word, []))
    return found
