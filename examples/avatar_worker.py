"""A Teller avatar worker: renders faces for agents that use
``teller.AvatarSession(mode="worker")``, on this machine or another one.

    pip install -e . -e plugins/livekit-plugins-teller
    export LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/avatar_worker.py start              # or: dev

It registers with LiveKit as agent "teller-avatar" (explicit dispatch). Each dispatched job
joins the agent's room as the avatar participant (``lk.publish_on_behalf`` = the agent),
takes the agent's TTS audio over a data stream and publishes video and audio. Run more
workers on more machines to scale out: LiveKit dispatches each new avatar to a worker whose
reported load is under its threshold (see livekit/plugins/teller/worker.py for the settings).
"""

from livekit.agents import cli
from livekit.plugins.teller.worker import build_server

if __name__ == "__main__":
    cli.run_app(build_server())
