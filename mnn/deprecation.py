"""Deprecations: a public name that goes away keeps working, with a warning, first.

mnn's policy (docs/design.md, "Deprecations"): a public function, method, argument
or class that is renamed or removed stays, and warns with ``MnnDeprecationWarning``
naming its replacement, for at least two minor releases before it is removed. The
warning points at the caller's line, so it shows where the code to change is.
"""

from __future__ import annotations

import warnings


class MnnDeprecationWarning(DeprecationWarning):
    """Something used here will be removed from mnn; the message says what replaces it."""


def warn_deprecated(old: str, new: str, *, since: str, removed_in: str,
                    stacklevel: int = 3) -> None:
    """Warn that ``old`` is deprecated in favour of ``new``.

    ``stacklevel`` 3 points at the caller of the function that calls this one.
    """
    warnings.warn(f"{old} is deprecated since mnn {since} and will be removed in mnn "
                  f"{removed_in}; use {new} instead", MnnDeprecationWarning,
                  stacklevel=stacklevel)
