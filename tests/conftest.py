"""Shared fixtures: the shared data folder and a prepared default portrait."""

from __future__ import annotations

from pathlib import Path

import pytest

from teller_agent.config import SHARED_DATA_DIR

SHARED_DATA = SHARED_DATA_DIR


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real media folder {SHARED_DATA} is absent (it sits beside the repository in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def settings(tmp_path_factory):
    from teller_agent import TellerSettings

    return TellerSettings(cache_dir=tmp_path_factory.mktemp("cache"), avatar_image=None, frame_size=512,
                          render_grid=64, seed=0)


@pytest.fixture(scope="session")
def avatar(settings):
    from teller_agent.face import prepare_avatar

    return prepare_avatar(None, settings)


@pytest.fixture(scope="session")
def renderer(avatar):
    from teller_agent.render import WarpRenderer

    return WarpRenderer(avatar)
