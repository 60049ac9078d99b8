"""Optimizers, one per file, each written once against the array API: SGD, Adam, AdamW.

Use them as in PyTorch::

    opt = mnn.optim.Adam(model, lr=1e-3)
    for x, y in batches:
        opt.zero_grad()
        loss = model(x, y)
        model.backward()
        opt.step()
"""

from mnn.optim.adam import Adam, AdamW
from mnn.optim.optimizer import Optimizer, build
from mnn.optim.sgd import SGD
from mnn.registry import register_optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "build", "register_optimizer"]
