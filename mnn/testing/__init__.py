"""Tools for checking layers: ``gradcheck`` compares a backward pass with finite differences,
and ``cases`` holds a small example of every layer (``layer_case`` registers yours)."""

from mnn.testing.cases import CASES, layer_case, make_case, place
from mnn.testing.gradcheck import TOLERANCES, GradcheckError, GradcheckPrecisionWarning, gradcheck

__all__ = ["gradcheck", "GradcheckError", "GradcheckPrecisionWarning", "TOLERANCES",
           "CASES", "layer_case", "make_case", "place"]
