"""mnn: Manual Neural Networks.

Every layer's forward and backward pass is derived by hand (the math is in each
layer's docstring) and written once against the Python array API standard, so the
same code runs on NumPy, PyTorch, CuPy, JAX and array-api-strict arrays.
"""

from mnn import backends, optim
from mnn.base import BaseLayer
from mnn.checkpoint import load, save
from mnn.errors import (
    AllocationError,
    ArgumentError,
    ArgumentTypeError,
    BackwardBeforeForwardError,
    BackwardTwiceError,
    CheckpointError,
    CheckpointNotFoundError,
    CheckpointWarning,
    DTypeError,
    LabelError,
    MissingFunctionError,
    MnnError,
    NonFiniteError,
    PlacementError,
    ShapeError,
)
from mnn.initializers import manual_seed
from mnn.layers import *  # noqa: F403
from mnn.layers import __all__ as _layers
from mnn.registry import register_layer, register_optimizer
from mnn.version import __version__ as __version__

__all__ = [
    "backends", "optim", "BaseLayer", "manual_seed", "save", "load", "register_layer",
    "register_optimizer",
    "MnnError", "ShapeError", "DTypeError", "LabelError", "PlacementError",
    "BackwardBeforeForwardError", "BackwardTwiceError", "CheckpointError", "MissingFunctionError",
    "ArgumentError", "ArgumentTypeError", "AllocationError", "CheckpointNotFoundError",
    "CheckpointWarning", "NonFiniteError",
    *_layers,
]
