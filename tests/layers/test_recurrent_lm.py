"""RecurrentLM: three AdamW steps of a 2-layer LSTM language model agree with torch.nn's
(Embedding, LSTM, Linear, cross-entropy) from the same weights, and its bad arguments."""

import numpy as np
import pytest

import mnn
from mnn.training import plain_step

torch = pytest.importorskip("torch", reason="the reference is a torch.nn language model")

VOCAB, CONTEXT, HIDDEN, LAYERS, BATCH = 11, 7, 6, 2, 4
#: mnn's parameter names and their torch.nn counterparts (``rnn.*`` keep their names).
TORCH_NAMES = {"tokens.w": "0.weight", "head.w": "2.weight", "head.b": "2.bias"}


class TorchLM(torch.nn.Module):
    """torch.nn's Embedding, LSTM (batch first) and Linear, as ``RecurrentLM`` chains them."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([
            torch.nn.Embedding(VOCAB, HIDDEN, dtype=torch.float64),
            torch.nn.LSTM(HIDDEN, HIDDEN, LAYERS, batch_first=True, dtype=torch.float64),
            torch.nn.Linear(HIDDEN, VOCAB, dtype=torch.float64)])

    def forward(self, ids):
        embedding, lstm, head = self.layers
        return head(lstm(embedding(ids))[0])


def torch_name(key):
    return TORCH_NAMES.get(key, key.replace("rnn.", "1.", 1))


def test_three_adamw_steps_match_torch(target, rng):
    lm = mnn.RecurrentLM(VOCAB, CONTEXT, HIDDEN, LAYERS, cell="lstm", rng=3)
    model = mnn.SequentialLayers([lm, mnn.CrossEntropyLossLayer(axis=-1)])
    theirs = TorchLM()
    theirs.layers.load_state_dict({torch_name(key): torch.tensor(np.asarray(value))
                                   for key, value in model[0].state_dict().items()})
    model.to(xp=target.backend.name, device=target.device_name, dtype="float64")
    step = plain_step(model, mnn.optim.AdamW(model, lr=0.05, weight_decay=0.1))
    optimizer = torch.optim.AdamW(theirs.parameters(), lr=0.05, weight_decay=0.1)

    for _ in range(3):
        ids = rng.integers(0, VOCAB, size=(BATCH, CONTEXT + 1))
        loss = step(target.asarray(ids[:, :-1]), target.asarray(ids[:, 1:]))
        optimizer.zero_grad()
        logits = theirs(torch.tensor(ids[:, :-1]))
        reference = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB),
                                                      torch.tensor(ids[:, 1:]).reshape(-1))
        reference.backward()
        optimizer.step()
        assert loss == pytest.approx(reference.item(), abs=1e-8)

    mine = model[0].state_dict()
    for key, value in theirs.layers.state_dict().items():
        ours = [k for k in mine if torch_name(k) == key]
        np.testing.assert_allclose(target.to_host(mine[ours[0]]), value.numpy(), rtol=0,
                                   atol=1e-8, err_msg=key)
    assert len(mine) == len(theirs.layers.state_dict())


@pytest.mark.parametrize("args, message", [
    ({"cell": "rnn"}, "expected cell to be one of ['gru', 'lstm'], got 'rnn'"),
    ({"context": 0}, "context"),
    ({"hidden_size": -1}, "hidden_size"),
])
def test_bad_arguments_are_a_clear_error(args, message):
    with pytest.raises(mnn.MnnError) as raised:
        mnn.RecurrentLM(**{"vocab_size": 5, "context": 4, **args})
    assert message in str(raised.value)


def test_longer_inputs_than_the_context_are_a_clear_error(target):
    lm = mnn.RecurrentLM(5, 3, 4, rng=0).to(xp=target.backend.name, device=target.device_name)
    with pytest.raises(mnn.ShapeError, match="expected at most 3 tokens per sequence"):
        lm(target.asarray(np.zeros((1, 4), dtype=np.int64)))
