"""An example library built on mnn: one custom layer, ``Swish``, kept to mnn's contract."""

from mnn_example.swish import Swish

__all__ = ["Swish"]
