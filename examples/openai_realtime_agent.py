"""A voice agent on OpenAI Realtime (speech in, speech out) with a Teller face.

    pip install -e . -e plugins/livekit-plugins-teller livekit-plugins-openai
    export OPENAI_API_KEY=... LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/openai_realtime_agent.py dev        # or: start | console

Environment: TELLER_AVATAR_IMAGE=me.jpg for your own portrait (default: the bundled one);
TELLER_AVATAR_MODE=worker to render on an avatar worker (examples/avatar_worker.py) instead
of in this process.
"""

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, cli
from livekit.plugins import openai, teller

server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session = AgentSession(
        llm=openai.realtime.RealtimeModel(voice="alloy"),
        turn_handling=teller.AVATAR_TURN_HANDLING,  # avatar audio outputs cannot pause
    )
    avatar = teller.AvatarSession(mode=os.environ.get("TELLER_AVATAR_MODE", "local"))
    await avatar.start(session, room=ctx.room)  # before session.start: the avatar takes the audio output
    await session.start(
        agent=Agent(instructions="You are a friendly assistant with a face. Keep answers short."),
        room=ctx.room,
    )
    await session.generate_reply(instructions="Greet the user and offer your help.")


if __name__ == "__main__":
    cli.run_app(server)
