"""The example layers' cases for mnn's checks (``mnn.testing.layer_case``): import this module
and ``mnn.testing.make_case("Swish")``, the contract tests and ``mnn check`` know them."""

from __future__ import annotations

import numpy as np

from mnn.testing import layer_case
from mnn.testing.cases import Case
from mnn_example.swish import Swish


@layer_case("Swish")
def swish_case(rng: np.random.Generator) -> Case:
    """A small Swish: random slopes, a batch of three."""
    return Swish(4, beta=float(rng.uniform(0.5, 2.0))), rng.standard_normal((3, 4)), None
