"""Text descriptors against a slow per-character oracle, on made-up unicode and on hand-picked texts."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import text_descriptors
from detectors.text_descriptors import TextDescriptors
from tests.components import c_extension

DESCRIPTORS = TextDescriptors()
COUNTED = ("length_chars", "length_words", "tokens", "non_ascii_share", "digit_share", "punctuation_share")
COUNTED += ("upper_share", "is_empty")


def oracle(text: str) -> dict[str, float]:
    """The character-class descriptors, one character at a time, from the definitions in the docstring."""
    digits = punctuation = letters = upper = non_ascii = words = tokens = 0
    previous_is_word, previous_is_space = False, True  # as if the text followed a space
    for character in text:
        is_word = character.isalnum() or character == "_"
        is_space = character.isspace()
        if is_word and not previous_is_word:
            tokens += 1  # a word starts
        if not is_word and not is_space:
            punctuation += 1
            tokens += 1  # each punctuation mark is a token
        if not is_space and previous_is_space:
            words += 1
        previous_is_word = is_word
        previous_is_space = is_space
        digits += character.isdecimal()
        letters += character.isalpha()
        upper += character.isalpha() and character.isupper()
        non_ascii += ord(character) > 127
    n = max(len(text), 1)
    return {
        "length_chars": len(text),
        "length_words": words,
        "tokens": tokens,
        "non_ascii_share": non_ascii / n,
        "digit_share": digits / n,
        "punctuation_share": punctuation / n,
        "upper_share": upper / max(letters, 1),
        "is_empty": float(words == 0),
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(), st.text(alphabet="aZ9_ .,!\t\n'’é—")), max_size=12))
def test_character_descriptors_equal_the_per_character_oracle(texts):
    described = DESCRIPTORS.describe(texts)

    for name in COUNTED:
        expected = [math.nan if text is None else oracle(text)[name] for text in texts]
        np.testing.assert_array_equal(described[name], expected, err_msg=name)


ASCII = st.text(alphabet=st.characters(max_codepoint=127))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), ASCII, st.text(alphabet="aZ9_ .,!\t\n\x0b\x1f'\"@:/")), max_size=12))
def test_the_descriptors_of_ascii_texts_counted_in_c_equal_the_per_character_oracle(texts):
    assert text_descriptors._ascii_counts is _text_counts().counts  # the batch is counted in C
    described = DESCRIPTORS.describe(texts)

    for name in COUNTED:
        expected = [math.nan if text is None else oracle(text)[name] for text in texts]
        np.testing.assert_array_equal(described[name], expected, err_msg=name)


@settings(max_examples=200, deadline=None)
@given(st.lists(ASCII, max_size=12))
def test_the_c_counts_of_ascii_texts_equal_the_numpy_twins(texts):
    counted = text_descriptors._character_counts(texts)
    twins = text_descriptors._counted_in_numpy(texts)

    assert counted.keys() == twins.keys()
    for name, values in twins.items():
        np.testing.assert_array_equal(counted[name], values, err_msg=name)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(ASCII, st.integers(1, 400)), min_size=1, max_size=3))
def test_the_c_counts_of_texts_longer_than_its_lanes_hold_equal_the_numpy_twins(pieces):
    """The C counts sum each 1,023 characters apart (its 10-bit lanes); a text of thousands runs across them."""
    texts = [piece * times for piece, times in pieces]
    assert text_descriptors._ascii_counts is _text_counts().counts
    counted = text_descriptors._character_counts(texts)
    for name, values in text_descriptors._counted_in_numpy(texts).items():
        np.testing.assert_array_equal(counted[name], values, err_msg=name)


def test_a_batch_with_one_text_beyond_ascii_is_counted_in_numpy():
    assert _text_counts().counts(["plain", "café"], text_descriptors._ascii_classes()) is None
    assert DESCRIPTORS.describe(["plain", "café"])["non_ascii_share"].tolist() == [0.0, 0.25]


def _text_counts():
    """The C counts (detectors/_text_counts.c): built wherever CI runs, where their absence is a failure."""
    return c_extension("detectors._text_counts")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokens_are_the_regex_matches_and_words_the_split(text):
    described = DESCRIPTORS.describe([text])

    assert described["tokens"][0] == len(re.findall(r"\w+|[^\w\s]", text))
    assert described["length_words"][0] == len(text.split())


def test_every_code_point_is_classed_as_python_does():
    characters = [chr(code_point) for code_point in range(0x110000)]  # lone surrogates included

    described = DESCRIPTORS.describe(characters)

    is_word = np.array([c.isalnum() or c == "_" for c in characters])
    is_space = np.array([c.isspace() for c in characters])
    np.testing.assert_array_equal(described["digit_share"], [c.isdecimal() for c in characters])
    np.testing.assert_array_equal(described["upper_share"], [c.isalpha() and c.isupper() for c in characters])
    np.testing.assert_array_equal(described["punctuation_share"], ~is_word & ~is_space)
    np.testing.assert_array_equal(described["length_words"], ~is_space)
    np.testing.assert_array_equal(described["tokens"], ~is_space)
    np.testing.assert_array_equal(described["non_ascii_share"], np.arange(0x110000) > 127)


def test_columns_are_float64_in_names_order_and_none_is_nan_everywhere():
    described = DESCRIPTORS.describe(["Hello, world", None])

    assert tuple(described) == DESCRIPTORS.names
    assert all(column.dtype == np.float64 and column.shape == (2,) for column in described.values())
    assert all(np.isnan(column[1]) and not np.isnan(column[0]) for column in described.values())


def test_an_empty_batch_gives_empty_columns():
    described = DESCRIPTORS.describe([])

    assert tuple(described) == DESCRIPTORS.names
    assert all(column.dtype == np.float64 and column.shape == (0,) for column in described.values())


def test_empty_and_whitespace_texts():
    described = DESCRIPTORS.describe(["", " \t\n", "\u3000", " x "])

    assert described["is_empty"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert described["length_chars"].tolist() == [0.0, 3.0, 1.0, 3.0]
    assert described["tokens"].tolist() == [0.0, 0.0, 0.0, 1.0]
    assert described["punctuation_share"].tolist() == [0.0, 0.0, 0.0, 0.0]  # no 0 / 0


def test_a_hand_counted_text():
    text = "Order #42 ARRIVED late, café ok?"
    described = {name: column[0] for name, column in DESCRIPTORS.describe([text]).items()}

    assert (described["length_chars"], described["length_words"], described["tokens"]) == (32, 6, 9)
    assert described["digit_share"] == 2 / 32
    assert described["punctuation_share"] == 3 / 32  # '#', ',' and '?'
    assert described["upper_share"] == 8 / 22  # O and ARRIVED among 22 letters
    assert described["non_ascii_share"] == 1 / 32


@pytest.mark.parametrize(
    ("text", "has_url"),
    [
        ("see https://example.com/help?x=1", 1),
        ("docs at http://localhost:8080", 1),
        ("go to www.example.org now", 1),
        ("(https://example.com)", 1),
        ("HTTPS://EXAMPLE.COM", 0),  # schemes are matched in lower case, as links are written
        ("the scheme https:// alone", 0),
        ("awww.", 0),
        ("a ratio of 3://4", 0),
    ],
)
def test_links(text, has_url):
    assert DESCRIPTORS.describe([text])["has_url"][0] == has_url


@pytest.mark.parametrize(
    ("text", "has_email"),
    [
        ("write to ana.lopez+billing@mail.example.co.uk.", 1),
        ("<support@example.org>", 1),
        ("jürgen@beispiel.de", 1),
        ("thanks @ana for the help", 0),
        ("user@localhost", 0),
        ("a@b.c", 0),  # one-letter top-level domain
        ("@decorator.method", 0),
    ],
)
def test_emails(text, has_email):
    assert DESCRIPTORS.describe([text])["has_email"][0] == has_email


@pytest.mark.parametrize(
    ("text", "is_refusal"),
    [
        ("I'm sorry, but I can't help with that.", 1),
        ("I’m sorry, but I can’t help with that.", 1),
        ("Sorry, but that is not something I can do.", 1),
        ("I can't assist with that request.", 1),
        ("i cannot provide medical advice.", 1),
        ("I am unable to comply with this request.", 1),
        ("I'm not able to share that.", 1),
        ("I won’t do that.", 1),
        ("I apologise, but this is outside what I can do.", 1),
        ("As an AI language model, I do not have opinions.", 1),
        ("  Hello! Unfortunately, I cannot help with this.", 1),
        ("I'm sorry to hear that your order is late. Here is what to do.", 0),
        ("I can't help but notice the typo.", 0),
        ("Sure! Here is the answer. I can't help with the rest, I'm afraid.", 0),  # not near the start
        ("Absolutely, as an aide I keep notes.", 0),
        ("", 0),
    ],
)
def test_refusals(text, is_refusal):
    assert DESCRIPTORS.describe([text])["is_refusal"][0] == is_refusal


def test_a_batch_equals_its_texts_one_at_a_time():
    texts = ["I can't help with that.", None, "", "mail x@example.com or https://example.com", "Ünïcödé 123"]

    batch = DESCRIPTORS.describe(texts)
    for row, text in enumerate(texts):
        single = DESCRIPTORS.describe([text])
        for name in DESCRIPTORS.names:
            np.testing.assert_array_equal(batch[name][row], single[name][0], err_msg=name)


def test_without_refusals_the_descriptors_are_the_same_less_is_refusal():
    texts = ["I'm sorry, but I can't help with that.", "How do I reset my password?", None, ""]
    full = TextDescriptors().describe(texts)

    prompts = TextDescriptors(refusals=False)
    described = prompts.describe(texts)

    assert "is_refusal" not in prompts.names and list(described) == list(prompts.names)
    assert full["is_refusal"].tolist()[:2] == [1.0, 0.0]
    for name, values in described.items():
        np.testing.assert_array_equal(values, full[name])
