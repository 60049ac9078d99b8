"""The layers, one per file. Each file holds the math (docstring), forward and backward."""

from mnn.layers.attention import MultiHeadAttention
from mnn.layers.cross_entropy_loss import CrossEntropyLossLayer
from mnn.layers.linear import LinearLayer
from mnn.layers.log import LogLayer
from mnn.layers.log_softmax import LogSoftmaxLayer
from mnn.layers.matrix_product import MatrixProduct
from mnn.layers.mse_loss import MSELossLayer
from mnn.layers.nll_loss import NllLossLayer
from mnn.layers.relu import ReluLayer
from mnn.layers.sequential import SequentialLayers
from mnn.layers.softmax import SoftmaxLayer

__all__ = [
    "CrossEntropyLossLayer",
    "LinearLayer",
    "LogLayer",
    "LogSoftmaxLayer",
    "MSELossLayer",
    "MatrixProduct",
    "MultiHeadAttention",
    "NllLossLayer",
    "ReluLayer",
    "SequentialLayers",
    "SoftmaxLayer",
]
