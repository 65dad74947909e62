"""Running against a real LiveKit server: a local ``--dev`` server, a headless recording
viewer, and the ``teller-agent demo`` job. Needs the ``livekit`` packages (installed with
``plugins/livekit-plugins-teller``); the server binary is found as described in
:func:`~teller_agent.live.server.find_server_binary`."""
