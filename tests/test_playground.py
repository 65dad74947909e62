"""``teller-agent playground`` in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium): the command as a user runs it, the page as a user sees it.

One module-scoped scenario runs the real command (``--port 0``), opens the page, lets the avatar
idle, makes it say a long sentence, interrupts it mid-sentence, uploads a photo with no face and
one with a face, and records what the page itself shows; the tests below assert on that record.
A screenshot of the page speaking goes to the test's output folder (and to
``$TELLER_PLAYGROUND_SCREENSHOT`` when set: how ``docs/playground.png`` is made).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("livekit.plugins.teller", reason="install plugins/livekit-plugins-teller")
pytest.importorskip("selenium", reason='the browser test needs Selenium: pip install -e ".[test]"')

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: A sentence long enough (about 7 s with eSpeak NG) to interrupt in the middle.
LONG_SENTENCE = ("Hello! I am your avatar. I run on your own computer, I move my lips as I speak, "
                 "and you can interrupt me at any moment, even in the middle of a long sentence like this one.")
#: Seconds between two mouth samples, and how many are taken while speaking / after the interrupt.
SAMPLE_S, SPEAK_SAMPLES, SETTLED_SAMPLES = 0.1, 20, 12


def _require_browser() -> None:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.fail("the browser test needs Debian's Chromium and its driver: "
                    "apt-get install -y chromium chromium-driver (.ci/run installs them)")


class PlaygroundProcess:
    """``teller-agent playground --port 0`` as a child process; its output is drained by a thread."""

    def __init__(self, timeout: float = 120.0):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("LIVEKIT_URL", None)  # always the local server it starts itself
        env.pop("OPENAI_API_KEY", None)  # the keyless set-up: eSpeak NG voices, no microphone
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "teller_agent.cli", "playground", "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        self.lines: deque[str] = deque(maxlen=400)
        self.url: str | None = None
        self.ready_s: float | None = None
        got_url = threading.Event()

        def drain() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if self.url is None and re.fullmatch(r"http://127\.0\.0\.1:\d+/", line.strip()):
                    self.url, self.ready_s = line.strip(), time.perf_counter() - self.t0
                    got_url.set()

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not got_url.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail("the playground did not print its URL:\n" + "".join(self.lines))

    def children(self) -> list[int]:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def stop(self, timeout: float = 30.0) -> int:
        """Ctrl-C, as a user stops it; returns its exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required", "--window-size=1000,1000"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _mouth_activity(samples: list[list[float]]) -> float:
    """Mean absolute grey-level change of the mouth box between consecutive samples."""
    a = np.asarray([s for s in samples if s], np.float32)
    return float(np.abs(np.diff(a, axis=0)).mean()) if len(a) > 1 else float("nan")


def _wait(driver, script: str, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"the page did not show {what} within {timeout:.0f} s")


def _post_json(url: str, body: dict) -> tuple[int, str]:
    """POST ``body`` as JSON; returns (HTTP status, the answer's ``error`` or "")."""
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()).get("error", "")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()).get("error", "")


def _upload_photo(driver, path: Path, timeout: float) -> str:
    """Pick ``path`` in the page's photo picker; returns the page's answer as ``"<ok|error>: <text>"``."""
    driver.execute_script("document.getElementById('photo-status').className = ''")
    driver.find_element("id", "photo").send_keys(str(path))
    return _wait(driver, "const s = document.getElementById('photo-status'); "
                         "return s.className ? s.className + ': ' + s.textContent : null", timeout,
                 f"an answer to the photo {path.name}")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """Run the whole page scenario once; returns what the page showed."""
    _require_browser()
    out = tmp_path_factory.mktemp("playground")
    record: dict = {"out": out}
    pg = PlaygroundProcess()
    record["ready_s"] = pg.ready_s
    driver = None
    try:
        driver = _browser()
        t_open = time.perf_counter()
        driver.get(pg.url)
        _wait(driver, "return window.playground && window.playground.presentedFrames > 5", 60, "the avatar's video")
        record["first_video_s"] = time.perf_counter() - t_open
        time.sleep(2.5)  # idle: the fps counter and the metrics fill in
        state = "return {fps: playground.fps, frames: playground.presentedFrames, status: " \
                "document.getElementById('status').dataset.state}"
        record["idle"] = driver.execute_script(state)
        record["controls"] = driver.execute_script(
            "return {mic_hidden: document.getElementById('mic').hidden, "
            "voices: [...document.getElementById('voice').options].map(o => o.value)}")
        record["rest_mouth"] = driver.execute_script("return playground.mouthPixels()")

        # say a long sentence through the text box and the Say button, as a user does
        box = driver.find_element("id", "say-text")
        box.clear()
        box.send_keys(LONG_SENTENCE)
        driver.find_element("id", "say").click()
        said = _wait(driver, "return playground.lastSay", 30, "an answer to Say")
        record["said_s"] = said["seconds"]
        _wait(driver, "return playground.avatarMetrics && playground.avatarMetrics.speech_frames > 0", 20,
              "speech frames in the avatar's metrics")
        frames0, t0 = driver.execute_script("return playground.presentedFrames"), time.perf_counter()
        speaking, fps = [], []
        for i in range(SPEAK_SAMPLES):
            speaking.append(driver.execute_script("return playground.mouthPixels()"))
            if i % 5 == 0:
                fps.append(driver.execute_script("return playground.fps"))
            if i == SPEAK_SAMPLES // 2:
                driver.save_screenshot(str(out / "playground_speaking.png"))
            time.sleep(SAMPLE_S)
        record["speaking_fps"] = (driver.execute_script("return playground.presentedFrames") - frames0) / (
            time.perf_counter() - t0)
        record["speaking_fps_samples"] = fps
        record["speaking"] = speaking
        record["panel"] = {k: driver.find_element("id", k).text
                           for k in ("m-fps", "m-av", "m-latency", "m-dropped", "m-render", "m-sent")}

        driver.find_element("id", "interrupt").click()
        t_int = time.perf_counter()
        time.sleep(0.6)  # the face settles over 120 ms; the video path adds its own delay
        settled = []
        for _ in range(SETTLED_SAMPLES):
            settled.append(driver.execute_script("return playground.mouthPixels()"))
            time.sleep(SAMPLE_S)
        record["settled"] = settled
        _wait(driver, "return playground.avatarMetrics && playground.avatarMetrics.interruptions >= 1", 10,
              "the interruption in the avatar's metrics")

        # a photo with no face: the named error on the page, and the old face stays
        from PIL import Image
        from skimage import data

        blank = out / "no_face.png"
        Image.fromarray(np.tile(np.linspace(40, 220, 256, dtype=np.uint8), (256, 1))).convert("RGB").save(blank)
        record["no_face_status"] = _upload_photo(driver, blank, 30)
        record["frames_after_bad_photo"] = driver.execute_script("return playground.presentedFrames")
        time.sleep(1.0)
        record["frames_later"] = driver.execute_script("return playground.presentedFrames")

        # a photo with a face: the page says so and the face changes
        mirrored = out / "astronaut_mirrored.jpg"
        Image.fromarray(data.astronaut()[:, ::-1]).save(mirrored)
        old_box = driver.execute_script("return playground.config.mouth_box")
        record["good_photo_status"] = _upload_photo(driver, mirrored, 60)
        record["mouth_box_change"] = (old_box, driver.execute_script("return playground.config.mouth_box"))
        record["api_errors"] = {name: _post_json(pg.url + "api/say", body) for name, body in (
            ("empty", {"text": "  "}), ("too long", {"text": "a" * 5000}), ("unknown voice", {"text": "hi", "voice": "x:y"}),
            ("openai without key", {"text": "hi", "voice": "openai:alloy"}))}
    finally:
        if driver is not None:
            driver.quit()
        pids = pg.children()
        try:
            record["exit_code"] = pg.stop()
        except subprocess.TimeoutExpired:
            record["exit_code"] = None
        finally:
            pg.kill()
        record["children_left"] = [p for p in pids if Path(f"/proc/{p}").exists()
                                   and "zombie" not in Path(f"/proc/{p}/status").read_text().lower()]
        record["log"] = "".join(pg.lines)
    shot = os.environ.get("TELLER_PLAYGROUND_SCREENSHOT")
    if shot and (out / "playground_speaking.png").exists():
        shutil.copyfile(out / "playground_speaking.png", shot)
    print(f"\nplayground: URL after {record['ready_s']:.1f} s, video in the page {record['first_video_s']:.1f} s "
          f"after opening it, {record['speaking_fps']:.1f} fps shown while speaking; screenshot: "
          f"{out / 'playground_speaking.png'}")
    return record


def test_command_prints_the_page_url_and_the_page_plays_the_avatar(scenario):
    assert scenario["idle"]["status"] == "live"
    assert scenario["idle"]["frames"] > 25, scenario["idle"]
    assert (scenario["out"] / "playground_speaking.png").stat().st_size > 10_000


def test_mouth_moves_while_speaking_and_settles_after_interrupt(scenario):
    speaking = _mouth_activity(scenario["speaking"])
    settled = _mouth_activity(scenario["settled"])
    assert speaking > 1.0, f"the mouth box barely changed while speaking ({speaking:.2f} grey levels)"
    assert speaking > 3 * settled, f"speaking {speaking:.2f} vs after interrupt {settled:.2f} grey levels"
    # settled back to the rest face: closer to it than the open mouths were
    rest = np.asarray(scenario["rest_mouth"], np.float32)
    last = np.asarray(scenario["settled"][-1], np.float32)
    open_dev = max(float(np.abs(np.asarray(s, np.float32) - rest).mean()) for s in scenario["speaking"] if s)
    assert float(np.abs(last - rest).mean()) < 0.5 * open_dev


def test_without_an_openai_key_the_page_offers_espeak_voices_and_no_microphone(scenario):
    controls = scenario["controls"]
    assert controls["mic_hidden"] is True
    assert controls["voices"] and all(v.startswith("espeak:") for v in controls["voices"]), controls


def test_metrics_panel_shows_numbers(scenario):
    panel = scenario["panel"]
    for key in ("m-fps", "m-latency", "m-render", "m-sent"):
        assert re.search(r"\d", panel[key]), f"{key} shows no number: {panel}"
    assert re.fullmatch(r"[+-]?\d+ ms", panel["m-av"]), panel
    assert re.fullmatch(r"\d+ / \d+", panel["m-dropped"]), panel


def test_no_face_photo_shows_the_named_error_and_the_old_face_stays(scenario):
    assert scenario["no_face_status"].startswith("error:"), scenario["no_face_status"]
    assert "no face" in scenario["no_face_status"].lower(), scenario["no_face_status"]
    assert scenario["frames_later"] > scenario["frames_after_bad_photo"] + 5  # the video goes on


def test_a_photo_with_a_face_switches_the_avatar(scenario):
    assert scenario["good_photo_status"].startswith("ok:"), scenario["good_photo_status"]
    old, new = scenario["mouth_box_change"]
    assert old != new  # the mirrored portrait's mouth is elsewhere in the frame


def test_bad_say_requests_get_named_errors(scenario):
    errors = scenario["api_errors"]
    assert errors["empty"][0] == 400 and "empty" in errors["empty"][1]
    assert errors["too long"][0] == 400 and "at most" in errors["too long"][1]
    assert errors["unknown voice"][0] == 400 and "espeak:<language>" in errors["unknown voice"][1]
    assert errors["openai without key"][0] == 400 and "OPENAI_API_KEY" in errors["openai without key"][1]


def test_ctrl_c_stops_everything_it_started(scenario):
    assert scenario["exit_code"] == 0, scenario["log"][-3000:]
    assert scenario["children_left"] == [], scenario["log"][-3000:]


@pytest.mark.realtime
def test_page_shows_20_fps_while_the_avatar_speaks(scenario):
    assert scenario["speaking_fps"] >= 20, scenario["speaking_fps_samples"]


@pytest.mark.realtime
def test_playground_reachable_within_15_s(scenario):
    assert scenario["ready_s"] <= 15


# ---------------------------------------------------------------- no browser needed


def test_vendored_livekit_client_matches_its_npm_provenance(tmp_path):
    from teller_agent.playground.vendor import LIVEKIT_CLIENT_VERSION, SDK_FILE, VENDOR_DIR, check_vendored

    record = check_vendored()
    assert record["version"] == LIVEKIT_CLIENT_VERSION and record["integrity"].startswith("sha512-")
    # an edited copy is caught
    for f in VENDOR_DIR.iterdir():
        shutil.copyfile(f, tmp_path / f.name)
    (tmp_path / SDK_FILE).write_text((VENDOR_DIR / SDK_FILE).read_text() + "\n// edited\n")
    with pytest.raises(ValueError, match="sha256"):
        check_vendored(tmp_path)


def test_page_loads_only_what_the_playground_serves():
    """No CDN at run time: every script and stylesheet of the page is a local /static path."""
    from teller_agent.playground.app import STATIC_DIR

    html = (STATIC_DIR / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(r.startswith("/static/") or r.startswith("data:") for r in refs), refs
    for r in refs:
        if r.startswith("/static/"):
            assert (STATIC_DIR / r.removeprefix("/static/")).is_file(), r


def test_mouth_box_covers_the_lips_and_the_dropped_jaw(avatar):
    from teller_agent.face.face68 import CHIN, LIPS
    from teller_agent.playground.app import mouth_box

    x0, y0, x1, y1 = mouth_box(avatar.landmarks, avatar.image.shape[0])
    lips = avatar.landmarks[list(LIPS)]
    assert x0 < lips[:, 0].min() and x1 > lips[:, 0].max() and y0 < lips[:, 1].min()
    assert lips[:, 1].max() < y1 <= avatar.landmarks[CHIN][1] + 0.5 * (y1 - y0)
