"""A voice agent on an STT -> LLM -> TTS pipeline with a Teller face.

    pip install -e . -e plugins/livekit-plugins-teller livekit-plugins-openai livekit-plugins-silero
    export OPENAI_API_KEY=... LIVEKIT_URL=... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/pipeline_agent.py dev               # or: start | console

Any STT, LLM and TTS plugins work the same way; the avatar only sees the TTS audio.
Environment: TELLER_AVATAR_IMAGE, TELLER_AVATAR_MODE=worker (see openai_realtime_agent.py).
"""

import os

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, cli
from livekit.plugins import openai, silero, teller


def prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = silero.VAD.load()


server = AgentServer(setup_fnc=prewarm)


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect()
    session = AgentSession(
        vad=ctx.proc.userdata["vad"],
        stt=openai.STT(),
        llm=openai.LLM(model="gpt-4o-mini"),
        tts=openai.TTS(voice="alloy"),
        turn_handling=teller.AVATAR_TURN_HANDLING,  # avatar audio outputs cannot pause
    )
    avatar = teller.AvatarSession(mode=os.environ.get("TELLER_AVATAR_MODE", "local"))
    await avatar.start(session, room=ctx.room)
    await session.start(agent=Agent(instructions="You are a helpful support agent. Be brief."), room=ctx.room)
    await session.say("Hi! How can I help you today?")


if __name__ == "__main__":
    cli.run_app(server)
