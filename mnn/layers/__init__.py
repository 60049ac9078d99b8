"""The layers, one per file. Each file holds the math (docstring), forward and backward."""

from mnn.layers.attention import MultiHeadAttention
from mnn.layers.avg_pool2d import AvgPool2d
from mnn.layers.batch_norm import BatchNorm1d, BatchNorm2d
from mnn.layers.conv2d import Conv2d
from mnn.layers.cross_entropy_loss import CrossEntropyLossLayer
from mnn.layers.dropout import Dropout
from mnn.layers.embedding import Embedding
from mnn.layers.flatten import Flatten
from mnn.layers.gelu import GELU
from mnn.layers.gpt import GPT
from mnn.layers.layer_norm import LayerNorm
from mnn.layers.linear import LinearLayer
from mnn.layers.log import LogLayer
from mnn.layers.log_softmax import LogSoftmaxLayer
from mnn.layers.matrix_product import MatrixProduct
from mnn.layers.max_pool2d import MaxPool2d
from mnn.layers.mse_loss import MSELossLayer
from mnn.layers.nll_loss import NllLossLayer
from mnn.layers.recurrent import GRU, LSTM, RNN
from mnn.layers.recurrent_lm import RecurrentLM
from mnn.layers.relu import ReluLayer
from mnn.layers.residual import Residual
from mnn.layers.sequential import SequentialLayers
from mnn.layers.sigmoid import Sigmoid
from mnn.layers.softmax import SoftmaxLayer
from mnn.layers.tanh import Tanh
from mnn.layers.transformer_block import TransformerBlock

__all__ = [
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLossLayer",
    "Dropout",
    "Embedding",
    "Flatten",
    "GELU",
    "GPT",
    "GRU",
    "LSTM",
    "LayerNorm",
    "LinearLayer",
    "LogLayer",
    "LogSoftmaxLayer",
    "MSELossLayer",
    "MatrixProduct",
    "MaxPool2d",
    "MultiHeadAttention",
    "NllLossLayer",
    "RNN",
    "RecurrentLM",
    "ReluLayer",
    "Residual",
    "SequentialLayers",
    "Sigmoid",
    "SoftmaxLayer",
    "Tanh",
    "TransformerBlock",
]
