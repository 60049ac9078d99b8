"""``mnn train-lm --model lstm`` and ``--model gru``: a short run that learns, saves a
RecurrentLM that ``mnn.load`` reads back, and ``mnn generate`` samples from."""

import pytest
from test_cli import mnn_cli
from test_cli_lm import FINAL, STEP, TEXT

import mnn
from mnn.data import CharacterVocabulary

TINY = ["--context", "8", "--d-model", "12", "--batch-size", "8", "--no-progress",
        "--threads", "1"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_trains_saves_and_generates(tmp_path, cell):
    (tmp_path / "abc.txt").write_text(TEXT, encoding="utf-8")
    result = mnn_cli("train-lm", "--model", cell, "--text", "abc.txt", "--steps", "40",
                     "--eval-every", "20", "--lr", "3e-2", "--sample-length", "10",
                     "--save", "lm.safetensors", "--plot", "none", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{cell.upper()} 2x12, context 8" in result.stdout  # two layers unless --layers
    losses = [float(step[3]) for step in STEP.findall(result.stdout)]
    assert len(losses) == 2 and losses[-1] < losses[0]
    assert FINAL.search(result.stdout)

    model, metadata = mnn.load(tmp_path / "lm.safetensors", with_metadata=True)
    lm = model[0]
    assert isinstance(lm, mnn.RecurrentLM) and isinstance(lm.rnn, (mnn.LSTM, mnn.GRU)[
        cell == "gru"])
    assert (lm.cell, lm.num_layers, lm.hidden_size, lm.context) == (cell, 2, 12, 8)

    generated = mnn_cli("generate", "lm.safetensors", "--prompt", "the ", "-n", "15",
                        cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    text = generated.stdout.removesuffix("\n")
    assert text.startswith("the ") and len(text) == 4 + 15
    assert set(text) <= set(CharacterVocabulary(TEXT).characters)
    evaluated = mnn_cli("evaluate", "lm.safetensors", "--text", "abc.txt", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"lm.safetensors: {cell.upper()} 2x12 (vocabulary" in evaluated.stdout
    assert "perplexity" in evaluated.stdout
