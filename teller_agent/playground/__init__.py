"""``teller-agent playground``: the avatar in a browser page (see :mod:`.app`)."""

from .app import DEFAULT_PORT, PLAYGROUND_ROOM, Playground, PlaygroundOptions, run_playground

__all__ = ["DEFAULT_PORT", "PLAYGROUND_ROOM", "Playground", "PlaygroundOptions", "run_playground"]
