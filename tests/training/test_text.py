"""Text for language models: the default corpus, reading a file, the character vocabulary, random
windows."""

import os

import numpy as np
import pytest

import mnn
from mnn.data import CharacterVocabulary, DataError, TextWindows, pydoc_corpus
from mnn.data.text import read_text


def test_the_default_corpus_ships_with_python():
    """Its size is the interpreter's (458,995 characters on 3.10, 465,048 on 3.11, 510,664 on
    3.13): only its order of magnitude is pinned."""
    text = pydoc_corpus()
    assert 100_000 < len(text) < 10_000_000 and text == pydoc_corpus()
    assert "for" in text and len(set(text)) > 60


def test_vocabulary_round_trip(target):
    vocabulary = CharacterVocabulary("hello, world")
    assert vocabulary.characters == " ,dehlorw" and len(vocabulary) == 9
    ids = vocabulary.encode("world, hello")
    assert ids.dtype == np.int64 and ids.tolist()[:2] == [8, 6]
    assert vocabulary.decode(target.asarray(ids)) == "world, hello"


@pytest.mark.parametrize(("ids", "message"), [
    ([0, -1], r"expected ids in \[0, 3\) \(the vocabulary has 3 characters\), got -1 at "
              r"position 1"),
    ([3], r"expected ids in \[0, 3\) .*got 3 at position 0"),
    ([2**40], r"expected ids in .*got 1099511627776 at position 0"),
    (np.array([0.0, 1.0]), r"expected a 1-D array of integer ids, got .*float64"),
    (np.array([[0, 1]]), r"expected a 1-D array of integer ids, got .*shape \(1, 2\)")])
def test_decode_refuses_ids_outside_the_vocabulary(target, ids, message):
    """-1 decoded as the last character, and a large id raised a raw IndexError."""
    with pytest.raises(DataError, match=rf"CharacterVocabulary: {message}"):
        CharacterVocabulary("abc").decode(target.asarray(np.asarray(ids)))


def test_ids_take_the_narrowest_dtype_that_holds_them():
    assert CharacterVocabulary("ab").dtype == np.uint8
    assert CharacterVocabulary("".join(map(chr, range(256)))).dtype == np.uint8
    wide = CharacterVocabulary("".join(map(chr, range(300))))
    assert wide.dtype == np.uint16
    ids = wide.encode("\x00\u012b", wide.dtype)
    assert ids.dtype == np.uint16 and ids.tolist() == [0, 299]
    assert wide.decode(ids) == "\x00\u012b"


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


def test_windows_of_narrow_tokens_are_int64(target):
    """A long text is stored in uint8; the model and the loss get int64 ids."""
    tokens = target.asarray(np.arange(50, dtype=np.uint8))
    inputs, labels = TextWindows(tokens, context=4, batch_size=3, rng=0).sample()
    for ids in (inputs, labels):
        assert target.to_host(ids).dtype == np.int64
    np.testing.assert_array_equal(target.to_host(labels), target.to_host(inputs) + 1)


def test_read_text_reads_a_utf8_file(tmp_path):
    (tmp_path / "a.txt").write_bytes("héllo\n".encode())
    assert read_text(str(tmp_path / "a.txt"), 7) == "héllo\n"  # 7 bytes: the limit is in bytes


def test_read_text_refuses_what_is_no_bounded_text_file(tmp_path):
    (tmp_path / "big.txt").write_bytes(b"a" * 101)
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe")
    cases = [("missing.txt", "no such file"), ("", "a directory, not a text file"),
             ("big.txt", r"101 bytes, more than --limit allows \(100 bytes\)"),
             ("binary.txt", "not UTF-8 text")]
    for name, message in cases:
        path = str(tmp_path / name)
        with pytest.raises(DataError, match=rf"^{path}: {message}"):
            read_text(path, 100, limit="--limit")
    for device in ("/dev/zero", "/dev/urandom"):  # endless: refused before a byte is read
        if os.path.exists(device):
            with pytest.raises(DataError, match=rf"{device}: not a regular file"):
                read_text(device, 10**9)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_read_text_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(DataError, match=r"fifo: not a regular file \(a FIFO, a device or a "
                                        r"socket\)"):
        read_text(str(tmp_path / "fifo"), 100)


def test_every_start_is_drawn_including_the_last(target):
    windows = TextWindows(target.asarray(np.arange(10)), context=8, batch_size=200, rng=1)
    starts = set(target.to_host(windows.sample()[0])[:, 0].tolist())
    assert starts == {0, 1}  # 10 tokens: windows of 8 with labels start at 0 or 1


def test_a_text_shorter_than_a_window_is_a_clear_error(target):
    with pytest.raises(DataError, match=r"a window of 8 tokens and its labels need 9 tokens, "
                                        r"the text has 8"):
        TextWindows(target.asarray(np.arange(8)), context=8, batch_size=2)
