"""Tools for checking layers: ``gradcheck`` compares a backward pass with finite differences."""

from mnn.testing.gradcheck import TOLERANCES, GradcheckError, GradcheckPrecisionWarning, gradcheck

__all__ = ["gradcheck", "GradcheckError", "GradcheckPrecisionWarning", "TOLERANCES"]
