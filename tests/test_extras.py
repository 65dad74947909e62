"""Training and evaluation dependencies stay out of the live path: the plugin and the engine import
without them, and a missing one is named with the pip command that installs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from teller_agent.errors import TellerError


def test_the_live_path_imports_no_training_dependency():
    code = ("import sys, teller_agent.cli, teller_agent.stream, teller_agent.render\n"
            "try:\n    import livekit.plugins.teller\nexcept ImportError:\n    pass\n"
            "bad = sorted(m for m in ('matplotlib', 'ai_edge_litert') if m in sys.modules)\n"
            "assert not bad, bad\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_a_missing_plotting_dependency_names_the_extra(monkeypatch):
    from teller_agent.plotting import pyplot

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    with pytest.raises(TellerError, match=r"pip install 'teller-agent\[train\]'"):
        pyplot()
