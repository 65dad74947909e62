"""The LiveKit plugin uses only the public API of livekit-agents and livekit-rtc: no ``_private``
name of theirs is imported, read, written or overridden, so an upgrade cannot break it silently."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

pytest.importorskip("livekit.plugins.teller", reason="install plugins/livekit-plugins-teller")

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "livekit-plugins-teller" / "livekit" / "plugins" / "teller"
OURS = "livekit.plugins.teller"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _foreign_private_names(cls: type) -> set[str]:
    """``self._x`` names the livekit base classes of ``cls`` use themselves."""
    names: set[str] = set()
    for base in cls.__mro__[1:]:
        module = getattr(base, "__module__", "") or ""
        if not module.startswith("livekit") or module.startswith(OURS):
            continue
        try:
            source = inspect.getsource(base)
        except (OSError, TypeError):
            continue
        names |= set(re.findall(r"self\.(_[A-Za-z]\w*)", source))
        names |= {n for n, v in vars(base).items() if _private(n) and callable(v)}
    return names


def _violations(name: str, source: str, module) -> list[str]:
    """Private livekit names used in ``source`` (the text of ``module``, shown as ``name``)."""
    tree = ast.parse(source)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("livekit") and not (
                node.module or "").startswith(OURS):
            found += [f"{name}:{node.lineno} imports {node.module}.{a.name}" for a in node.names if _private(a.name)]
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{name}:{node.lineno} reads {ast.unparse(node)} (another object's private name)")
        if isinstance(node, ast.ClassDef):
            cls = getattr(module, node.name, None)
            if not isinstance(cls, type):
                continue
            foreign = _foreign_private_names(cls)
            for sub in ast.walk(node):
                if (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self"
                        and sub.attr in foreign):
                    found.append(f"{name}:{sub.lineno} {node.name} uses its livekit base's self.{sub.attr}")
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and sub.name in foreign:
                    found.append(f"{name}:{sub.lineno} {node.name} overrides its livekit base's {sub.name}")
    return found


def test_the_plugin_uses_no_private_livekit_names():
    files = sorted(PLUGIN.glob("*.py"))
    assert len(files) >= 8
    found = []
    for f in files:
        module = importlib.import_module(OURS if f.stem == "__init__" else f"{OURS}.{f.stem}")
        found += _violations(f.name, f.read_text(), module)
    assert not found, "\n".join(found)


def test_the_check_finds_private_uses():
    """The check itself: a plugin module written the old way is caught on every count."""
    source = (
        "from livekit.agents.voice.avatar import AvatarRunner\n"
        "from livekit.agents.worker import _DefaultLoadCalc\n\n\n"
        "class Runner(AvatarRunner):\n"
        "    def go(self, job):\n"
        "        self._av_sync.clear_queue()\n"
        "        return job._info.url\n\n"
        "    def _on_clear_buffer(self):\n"
        "        pass\n"
    )
    module = types.ModuleType("probe")
    exec(compile(source, "probe.py", "exec"), module.__dict__)
    text = "\n".join(_violations("probe.py", source, module))
    assert "_DefaultLoadCalc" in text and "job._info" in text
    assert "self._av_sync" in text and "overrides its livekit base's _on_clear_buffer" in text
