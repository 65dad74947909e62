"""Headless matplotlib for the training and evaluation pictures (an optional dependency).

The live avatar draws no plots, so matplotlib comes with the ``train`` and ``eval`` extras
(``pip install 'teller-agent[train]'`` or ``'teller-agent[eval]'``), not with every install.
"""

from __future__ import annotations

from .errors import TellerError


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend.

    Raises:
        TellerError: matplotlib is not installed (names the pip command).
    """
    try:
        import matplotlib
    except ImportError as e:
        raise TellerError(
            f"training and evaluation plots need matplotlib ({e}); install it with "
            "`pip install 'teller-agent[train]'` (or '[eval]')"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
