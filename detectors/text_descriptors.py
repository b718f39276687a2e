"""Numeric descriptors of LLM prompts and responses, a batch at a time in a few vectorised passes."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np

__all__ = ["REFUSAL_PATTERNS", "TextDescriptors"]

#: Joins the batch into one string: whitespace, so it neither merges words nor counts as anything.
_SEPARATOR = "\n"
#: Bits of a code point's classes, as Python's str predicates (and hence ``re``'s ``\d``, ``\s``, ``\w``) see them.
_DIGIT, _SPACE, _WORD, _LETTER, _UPPER = 1, 2, 4, 8, 16
_N_CODE_POINTS = 0x110000

_URL = re.compile(r"\b(?:https?://|www\.)\w")
_EMAIL = re.compile(r"[\w.%+-]@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}")
_APOSTROPHE = "['’]"
#: Refusal phrases (English, matched case-insensitively, ``'`` or ``’`` as the apostrophe).
REFUSAL_PATTERNS = (
    rf"(?:i{_APOSTROPHE}m |i am )?sorry,? but\b",
    r"i apologi[sz]e,? but\b",
    rf"i(?: can(?:not|{_APOSTROPHE}t| not)| won{_APOSTROPHE}t| will not|{_APOSTROPHE}m unable to| am unable to"
    rf"|{_APOSTROPHE}m not able to| am not able to) (?:help(?! but)|assist|provide|comply|fulfil|answer|share|do that)",
    r"as an ai\b",
)
#: Where a refusal may start: after at most three words ("Hello! Unfortunately, I can't help ...").
#: Matched on the lower-cased head of the text (cheaper than IGNORECASE), words taken possessively.
_REFUSAL = re.compile(r"\W*+(?:\w++\W++){0,3}?(?:" + "|".join(REFUSAL_PATTERNS) + ")")
#: A refusal starts within this many characters, or it is not one.
_REFUSAL_HEAD = 300


@cache
def _code_point_classes() -> np.ndarray:
    """The class bits of every code point, from numpy's vectorised str predicates (once, about 0.1 s)."""
    chars = np.arange(_N_CODE_POINTS, dtype=np.uint32).view("U1")
    letter = np.strings.isalpha(chars)
    members = {
        _DIGIT: np.strings.isdecimal(chars),
        _SPACE: np.strings.isspace(chars),
        _WORD: np.strings.isalnum(chars) | (chars == "_"),
        _LETTER: letter,
        _UPPER: letter & np.strings.isupper(chars),
    }
    classes = np.zeros(_N_CODE_POINTS, dtype=np.uint8)
    for bit, is_member in members.items():
        classes[is_member] |= bit
    return classes


#: What :func:`_character_counts` counts in each text, in the order ``detectors/_text_counts.c`` writes them.
_COUNTS = ("chars", "words", "word_runs", "punctuation", "letters", "digits", "upper")


def _character_counts(strings: list[str]) -> dict[str, np.ndarray]:
    """Each text's characters, runs of non-space (words) and of word characters, punctuation marks, letters, digits,
    upper-case letters and characters beyond ASCII: in C for a batch of ASCII texts, else :func:`_counted_in_numpy`."""
    if _ascii_counts is not None:
        counted = _ascii_counts(strings, _ascii_classes())
        if counted is not None:
            table = np.frombuffer(counted, dtype=np.int32).reshape(len(strings), len(_COUNTS))
            return {**dict(zip(_COUNTS, table.T, strict=True)), "non_ascii": np.zeros(len(strings), np.int32)}
    return _counted_in_numpy(strings)


def _counted_in_numpy(strings: list[str]) -> dict[str, np.ndarray]:
    """:func:`_character_counts` of any texts, in a few numpy passes over the batch's code points."""
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    # One string for the batch, every text between separators; text i and the separator after it
    # are positions starts[i] .. starts[i + 1] - 1, so a sum over that slice counts text i only.
    joined = _SEPARATOR + _SEPARATOR.join(strings) + _SEPARATOR
    starts = np.cumsum(lengths + 1) - lengths
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    classes = _code_point_classes().take(codes)

    def count(is_member: np.ndarray) -> np.ndarray:
        return np.add.reduceat(is_member, starts, dtype=np.int32)

    def count_runs(is_member: np.ndarray) -> np.ndarray:
        return count(np.concatenate(([False], is_member[1:] & ~is_member[:-1])))

    word, space = (classes & _WORD) != 0, (classes & _SPACE) != 0
    return {
        "chars": lengths,
        "words": count_runs(~space),
        "word_runs": count_runs(word),
        "punctuation": count(~(word | space)),
        "letters": count((classes & _LETTER) != 0),
        "digits": count((classes & _DIGIT) != 0),
        "upper": count((classes & _UPPER) != 0),
        "non_ascii": count(codes > 127),
    }


@cache
def _ascii_classes() -> bytes:
    """The class bits of the 128 ASCII characters, as ``detectors/_text_counts.c`` reads them."""
    return _code_point_classes()[:128].tobytes()


def _c_counts() -> Callable[[list[str], bytes], bytes | None] | None:
    """The counts in C, one pass over each ASCII text (setup.py); None where they were built without a C compiler."""
    try:
        from detectors._text_counts import counts
    except ImportError:
        return None
    return counts


_ascii_counts = _c_counts()


class TextDescriptors:
    r"""Length, character make-up, links and refusals of each text of a batch, as float64 columns.

    =====================  ====================================================================
    ``length_chars``       characters (code points)
    ``length_words``       runs of non-whitespace, as ``len(text.split())``
    ``tokens``             a tokenizer-free estimate of the token count: words (runs of word
                           characters) plus punctuation marks, one each, that is the number of
                           matches of the regex ``\w+|[^\w\s]``; no model's tokenizer is run
    ``non_ascii_share``    share of characters beyond ASCII
    ``digit_share``        share of decimal digits (Unicode Nd, the regex ``\d``)
    ``punctuation_share``  share of punctuation marks and symbols: neither word characters
                           (``\w``: letters, numbers, ``_``) nor whitespace
    ``upper_share``        share of upper-case letters among the letters
    ``has_url``            1 if an ``http://``, ``https://`` or ``www.`` link (lower case, as links
                           are written) is followed by a word character
    ``has_email``          1 if something like ``name@example.org`` appears
    ``is_empty``           1 if the text is empty or whitespace only
    ``is_refusal``         1 if one of ``REFUSAL_PATTERNS`` (such as "I'm sorry, but",
                           "I can't help with", "As an AI") starts after at most three words
    =====================  ====================================================================

    A None text (not sent) gives NaN in every column. Shares are 0 for an
    empty text, and ``upper_share`` is 0 for a text without letters.

    The character classes are Python's (``str.isdecimal``, ``isspace``,
    ``isalnum``, ``isalpha``, ``isupper``), read from a table of every code
    point, so a batch costs one join, one encode and a few numpy passes over
    its characters: no Python loop per character. Per text there remain three
    regex searches, the link and e-mail ones only when ``://``, ``www.`` or
    ``@`` is there (looked for in the joined batch first, so a batch without
    any costs no pass per text).

    Examples
    --------
    >>> texts = ["I'm sorry, but I can't help with that.", "Mail ana@example.org!", "", None]
    >>> columns = TextDescriptors().describe(texts)
    >>> columns["tokens"].tolist(), columns["is_refusal"].tolist(), columns["has_email"].tolist()
    ([14.0, 7.0, 0.0, nan], [1.0, 0.0, 0.0, nan], [0.0, 1.0, 0.0, nan])
    >>> rng = np.random.default_rng(0)
    >>> words = rng.choice(["the", "Order", "42", "arrived", "late.", "Café"], size=(1_000, 80))
    >>> columns = TextDescriptors().describe([" ".join(row) for row in words])
    >>> round(float(columns["upper_share"].mean()), 4), round(float(columns["non_ascii_share"].mean()), 4)
    (0.0866, 0.0313)
    """

    names: tuple[str, ...] = (
        "length_chars",
        "length_words",
        "tokens",
        "non_ascii_share",
        "digit_share",
        "punctuation_share",
        "upper_share",
        "has_url",
        "has_email",
        "is_empty",
        "is_refusal",
    )

    def __init__(self, refusals: bool = True):
        self.refusals = refusals
        if not refusals:  # a prompt is never a refusal: save the one regex run per text
            self.names = tuple(name for name in TextDescriptors.names if name != "is_refusal")

    def describe(self, texts: Sequence[str | None]) -> dict[str, np.ndarray]:
        """Every descriptor of every text, as ``{name: float64 array}`` in ``names`` order."""
        missing = np.array([text is None for text in texts]) if None in texts else None  # texts not sent
        strings = [text or "" for text in texts]
        counts = _character_counts(strings)
        n_characters, n_punctuation = np.maximum(counts["chars"], 1), counts["punctuation"]
        # A batch without "://", "www." or "@" anywhere has no link or address: no pass per text.
        joined = _SEPARATOR.join(strings)
        links, at_signs = "://" in joined or "www." in joined, "@" in joined
        columns = {
            "length_chars": counts["chars"],
            "length_words": counts["words"],
            "tokens": counts["word_runs"] + n_punctuation,
            "non_ascii_share": counts["non_ascii"] / n_characters,
            "digit_share": counts["digits"] / n_characters,
            "punctuation_share": n_punctuation / n_characters,
            "upper_share": counts["upper"] / np.maximum(counts["letters"], 1),
            "has_url": (
                [("://" in text or "www." in text) and _URL.search(text) is not None for text in strings]
                if links
                else np.zeros(len(strings))
            ),
            "has_email": (
                ["@" in text and _EMAIL.search(text) is not None for text in strings]
                if at_signs
                else np.zeros(len(strings))
            ),
            "is_empty": counts["words"] == 0,
        }
        if self.refusals:
            columns["is_refusal"] = [_REFUSAL.match(text[:_REFUSAL_HEAD].lower()) is not None for text in strings]
        described = {}
        for name in self.names:
            described[name] = np.asarray(columns[name], dtype=np.float64)
            if missing is not None:
                described[name][missing] = np.nan
        return described
