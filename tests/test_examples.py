"""The examples import and build their agent servers (running them needs API keys)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("name, needs", [
    ("avatar_worker", []),
    ("openai_realtime_agent", ["livekit.plugins.openai"]),
    ("pipeline_agent", ["livekit.plugins.openai", "livekit.plugins.silero"]),
])
def test_example_imports(name, needs):
    pytest.importorskip("livekit.plugins.teller", reason="install plugins/livekit-plugins-teller")
    for module in needs:
        pytest.importorskip(module, reason=f"the example needs {module} (pip install livekit-plugins-...)")
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if name != "avatar_worker":
        from livekit.agents import AgentServer

        assert isinstance(module.server, AgentServer)


def test_avatar_worker_registers_the_teller_agent_name():
    pytest.importorskip("livekit.plugins.teller", reason="install plugins/livekit-plugins-teller")
    from livekit.plugins.teller.worker import build_server

    server = build_server()
    assert server._agent_name == "teller-avatar"  # explicit dispatch only
    assert 0 < server._load_threshold < 1
