"""Text for language models: the default corpus, the character vocabulary, random windows."""

import numpy as np
import pytest

import mnn
from mnn.data import CharacterVocabulary, DataError, TextWindows, pydoc_corpus


def test_the_default_corpus_ships_with_python():
    text = pydoc_corpus()
    assert 400_000 < len(text) < 600_000 and text == pydoc_corpus()
    assert "for" in text and len(set(text)) > 60


def test_vocabulary_round_trip(target):
    vocabulary = CharacterVocabulary("hello, world")
    assert vocabulary.characters == " ,dehlorw" and len(vocabulary) == 9
    ids = vocabulary.encode("world, hello")
    assert ids.dtype == np.int64 and ids.tolist()[:2] == [8, 6]
    assert vocabulary.decode(target.asarray(ids)) == "world, hello"


def test_unknown_characters_and_empty_texts_are_clear_errors():
    with pytest.raises(DataError, match=r"the character 'z' is not in the vocabulary of 3"):
        CharacterVocabulary("abc").encode("abz")
    with pytest.raises(DataError, match=r"CharacterVocabulary: the text is empty"):
        CharacterVocabulary("")


def test_windows_and_their_labels(target):
    tokens = target.asarray(np.arange(100) * 3)
    windows = TextWindows(tokens, context=7, batch_size=5, rng=0)
    inputs, labels = windows.sample()
    inputs, labels = target.to_host(inputs), target.to_host(labels)
    assert inputs.shape == labels.shape == (5, 7)
    np.testing.assert_array_equal(labels, inputs + 3)  # the next token
    np.testing.assert_array_equal(np.diff(inputs, axis=1), 3)  # contiguous windows
    assert inputs.min() >= 0 and labels.max() <= 297
    again = TextWindows(tokens, context=7, batch_size=5, rng=0).sample()[0]
    np.testing.assert_array_equal(target.to_host(again), inputs)  # seeded
    assert mnn.backends.Placement.of(windows.sample()[0]).device == target.device


def test_every_start_is_drawn_including_the_last(target):
    windows = TextWindows(target.asarray(np.arange(10)), context=8, batch_size=200, rng=1)
    starts = set(target.to_host(windows.sample()[0])[:, 0].tolist())
    assert starts == {0, 1}  # 10 tokens: windows of 8 with labels start at 0 or 1


def test_a_text_shorter_than_a_window_is_a_clear_error(target):
    with pytest.raises(DataError, match=r"a window of 8 tokens and its labels need 9 tokens, "
                                        r"the text has 8"):
        TextWindows(target.asarray(np.arange(8)), context=8, batch_size=2)
