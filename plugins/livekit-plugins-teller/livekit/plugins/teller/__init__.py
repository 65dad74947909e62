"""Teller avatar plugin for LiveKit Agents: a lip-synced talking face from one portrait photo,
rendered on your own machine.

Usage::

    from livekit.plugins import teller

    session = AgentSession(..., turn_handling=teller.AVATAR_TURN_HANDLING)
    avatar = teller.AvatarSession(avatar_image="me.jpg")   # in-process
    await avatar.start(session, room=ctx.room)
    await session.start(agent=..., room=ctx.room)

or ``teller.AvatarSession(mode="worker")`` with an avatar worker running
(``python -m livekit.plugins.teller.worker start``), which LiveKit dispatches to the room.
"""

from livekit.agents import Plugin

from .avatar import AVATAR_TURN_HANDLING, DEFAULT_WORKER_AGENT_NAME, SET_AVATAR_IMAGE_RPC, AvatarSession
from .log import logger
from .metrics import METRICS_ATTRIBUTE, TellerMetrics
from .runner import TellerAvatarRunner
from .version import __version__
from .video_generator import TellerVideoGenerator

__all__ = [
    "AVATAR_TURN_HANDLING",
    "DEFAULT_WORKER_AGENT_NAME",
    "SET_AVATAR_IMAGE_RPC",
    "METRICS_ATTRIBUTE",
    "AvatarSession",
    "TellerAvatarRunner",
    "TellerMetrics",
    "TellerVideoGenerator",
    "__version__",
]


class TellerPlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


Plugin.register_plugin(TellerPlugin())
