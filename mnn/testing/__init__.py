"""Tools for checking layers: ``gradcheck`` compares a backward pass with finite differences,
and ``cases`` finds the small ``example`` of every registered layer."""

from mnn.testing.cases import cases, make_case, place
from mnn.testing.gradcheck import TOLERANCES, GradcheckError, GradcheckPrecisionWarning, gradcheck

__all__ = ["gradcheck", "GradcheckError", "GradcheckPrecisionWarning", "TOLERANCES",
           "cases", "make_case", "place"]
