import array_api_strict
import numpy as np

import mnn


def train(xp, steps=300):
    """A 2-16-2 network learns which quadrants have x0 * x1 > 0, on arrays of namespace xp."""
    mnn.manual_seed(0)  # the same initial weights on every backend
    net = mnn.SequentialLayers([mnn.LinearLayer(2, 16), mnn.ReluLayer(),
                                mnn.LinearLayer(16, 2), mnn.CrossEntropyLossLayer()])
    points = np.random.default_rng(0).uniform(-1, 1, size=(256, 2))
    labels = (points[:, 0] * points[:, 1] > 0).astype(np.int64)
    x, labels = xp.asarray(points), xp.asarray(labels)
    for _ in range(steps):
        net.zero_grads()
        loss = net(x, labels)  # forward, ending in the loss
        net.backward()         # hand-written backward passes, layer by layer
        net.step(lr=0.5)       # plain gradient descent
    return float(loss)


loss_numpy, loss_strict = train(np), train(array_api_strict)
print(f"final loss on NumPy: {loss_numpy:.4f}, on array-api-strict: {loss_strict:.4f}")
