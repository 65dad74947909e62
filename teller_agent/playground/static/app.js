// teller-agent playground page: joins the room with livekit-client, shows the avatar, sends
// requests to the playground server (say, interrupt, portrait) and shows live metrics.
// `window.playground` exposes the page's state to tests and to the browser console.
"use strict";

const LK = window.LivekitClient;
const $ = (id) => document.getElementById(id);
const METRICS_ATTRIBUTE = "teller.metrics";

const state = {
  config: null,
  room: null,
  videoTrack: null,
  audioTrack: null,
  fps: null,            // frames shown per second, last second (requestVideoFrameCallback)
  presentedFrames: 0,   // frames shown since the video started
  avatarMetrics: null,  // last teller.metrics of the avatar participant
  pageStats: null,      // {framesDropped, avOffsetMs} from getStats
  lastSay: null,        // last /api/say answer
  micOn: false,
  error: null,
};
window.playground = state;

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.dataset.state = kind;
}

async function api(path, body) {
  const init = { method: "POST" };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "Content-Type": "application/json" };
  }
  const res = await fetch(path, init);
  let data;
  try { data = await res.json(); } catch { data = { error: `${res.status} ${res.statusText}` }; }
  if (!res.ok || data.error) throw new Error(data.error || `${res.status} ${res.statusText}`);
  return data;
}

// --- video frames ---------------------------------------------------------------------------

function countFrames() {
  const video = $("avatar");
  if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
  let windowStart = null, windowFrames = 0;
  const onFrame = (now, meta) => {
    state.presentedFrames = meta.presentedFrames;
    if (windowStart === null) { windowStart = now; windowFrames = meta.presentedFrames; }
    else if (now - windowStart >= 1000) {
      state.fps = (meta.presentedFrames - windowFrames) * 1000 / (now - windowStart);
      windowStart = now; windowFrames = meta.presentedFrames;
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// Grey levels of the mouth box of the current video frame, 24x16 samples: what a test (or you,
// in the console) compares between moments to see the mouth move.
state.mouthPixels = function () {
  const video = $("avatar"), box = state.config && state.config.mouth_box;
  if (!box || !video.videoWidth) return null;
  const scale = video.videoWidth / state.config.frame_size;
  const canvas = state._canvas || (state._canvas = document.createElement("canvas"));
  canvas.width = 24; canvas.height = 16;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const [x0, y0, x1, y1] = box.map((v) => v * scale);
  ctx.drawImage(video, x0, y0, x1 - x0, y1 - y0, 0, 0, 24, 16);
  const rgba = ctx.getImageData(0, 0, 24, 16).data, grey = [];
  for (let i = 0; i < rgba.length; i += 4) grey.push(0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2]);
  return grey;
};

// --- metrics ----------------------------------------------------------------------------------

function fmt(v, digits = 0, unit = "") {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : `${v.toFixed(digits)}${unit}`;
}

function inbound(report) {
  for (const s of report.values()) if (s.type === "inbound-rtp") return s;
  return null;
}

let prevVideo = null, prevAudio = null;
async function pollStats() {
  if (!state.videoTrack) return;
  const v = inbound(await state.videoTrack.getRTCStatsReport());
  const a = state.audioTrack ? inbound(await state.audioTrack.getRTCStatsReport()) : null;
  const delay = (cur, prev) => {  // mean playout (jitter buffer) delay over the last second, ms
    if (!cur || !cur.jitterBufferEmittedCount) return null;
    const n = cur.jitterBufferEmittedCount - (prev ? prev.jitterBufferEmittedCount : 0);
    const d = cur.jitterBufferDelay - (prev ? prev.jitterBufferDelay : 0);
    return n > 0 ? (d / n) * 1000 : (cur.jitterBufferDelay / cur.jitterBufferEmittedCount) * 1000;
  };
  const dv = delay(v, prevVideo), da = delay(a, prevAudio);
  state.pageStats = {
    framesDropped: v ? (v.framesDropped || 0) : null,
    framesDecoded: v ? (v.framesDecoded || 0) : null,
    avOffsetMs: dv !== null && da !== null ? dv - da : null,
  };
  prevVideo = v; prevAudio = a;
}

function showMetrics() {
  const m = state.avatarMetrics || {}, p = state.pageStats || {};
  $("m-fps").textContent = fmt(state.fps, 1);
  $("m-av").textContent = p.avOffsetMs === null || p.avOffsetMs === undefined ? "–" : `${p.avOffsetMs >= 0 ? "+" : ""}${p.avOffsetMs.toFixed(0)} ms`;
  $("m-latency").textContent = m.latency_ms_p50 == null ? "–" : `${fmt(m.latency_ms_p50)} / ${fmt(m.latency_ms_p95)} ms`;
  $("m-dropped").textContent = `${p.framesDropped ?? "–"} / ${m.frames_dropped ?? "–"}`;
  $("m-render").textContent = m.render_ms_p50 == null ? "–" : `${fmt(m.render_ms_p50, 1)} / ${fmt(m.generate_ms_p50, 1)} ms`;
  $("m-sent").textContent = fmt(m.fps, 1);
  $("m-interruptions").textContent = m.interruptions ?? "–";
}

function readAvatarMetrics(participant) {
  const raw = participant && participant.attributes && participant.attributes[METRICS_ATTRIBUTE];
  if (raw) {
    try { state.avatarMetrics = JSON.parse(raw); } catch { /* a torn update: keep the last one */ }
  }
}

// --- controls ---------------------------------------------------------------------------------

function wireControls() {
  $("say-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const text = $("say-text").value.trim();
    if (!text) return;
    try {
      state.lastSay = await api("/api/say", { text, voice: $("voice").value });
      setStatus("speaking", "live");
    } catch (e) { setStatus(e.message, "error"); }
  });
  $("interrupt").addEventListener("click", async () => {
    try { await api("/api/interrupt"); setStatus("interrupted", "live"); } catch (e) { setStatus(e.message, "error"); }
  });
  $("start-audio").addEventListener("click", async () => {
    await state.room.startAudio();
    $("start-audio").hidden = state.room.canPlaybackAudio;
  });
  $("mic").addEventListener("click", async () => {
    state.micOn = !state.micOn;
    try {
      await state.room.localParticipant.setMicrophoneEnabled(state.micOn);
    } catch (e) { state.micOn = false; setStatus(`microphone: ${e.message}`, "error"); }
    $("mic").classList.toggle("on", state.micOn);
    $("mic").textContent = state.micOn ? "Stop talking" : "Talk (microphone)";
  });
  $("photo").addEventListener("change", async () => {
    const file = $("photo").files[0], status = $("photo-status");
    if (!file) return;
    status.className = ""; status.textContent = `preparing ${file.name}…`;
    const form = new FormData();
    form.append("photo", file, file.name);
    try {
      const data = await api("/api/portrait", form);
      state.config.mouth_box = data.mouth_box;
      status.className = "ok"; status.textContent = `now speaking as ${file.name}`;
    } catch (e) {
      status.className = "error"; status.textContent = e.message;
    }
    $("photo").value = "";
  });
}

// --- room -------------------------------------------------------------------------------------

async function main() {
  wireControls();
  const config = await (await fetch("/api/config")).json();
  state.config = config;
  if (config.openai) {
    const group = document.createElement("optgroup");
    group.label = "OpenAI";
    for (const v of config.openai_voices) group.append(new Option(`OpenAI TTS · ${v}`, `openai:${v}`));
    $("voice").append(group);
    $("mic").hidden = false;
  }
  const { url, token } = await api("/api/token");
  const room = new LK.Room({ adaptiveStream: false, dynacast: false });
  state.room = room;
  room.on(LK.RoomEvent.TrackSubscribed, (track, pub, participant) => {
    if (participant.identity !== config.avatar_identity) return;
    if (track.kind === "video") {
      state.videoTrack = track;
      track.attach($("avatar"));
      countFrames();
      setStatus("live", "live");
    } else if (track.kind === "audio") {
      state.audioTrack = track;
      track.attach($("avatar-audio"));
    }
  });
  room.on(LK.RoomEvent.ParticipantAttributesChanged, (changed, participant) => {
    if (participant.identity === config.avatar_identity) readAvatarMetrics(participant);
  });
  room.on(LK.RoomEvent.AudioPlaybackStatusChanged, () => { $("start-audio").hidden = room.canPlaybackAudio; });
  room.on(LK.RoomEvent.Disconnected, () => setStatus("disconnected from the room (is the playground still running?)", "error"));
  await room.connect(url, token);
  if (!state.videoTrack) setStatus("waiting for the avatar's video…", "connecting");
  $("start-audio").hidden = room.canPlaybackAudio;
  readAvatarMetrics(room.getParticipantByIdentity(config.avatar_identity));
  setInterval(async () => {
    try { await pollStats(); } catch { /* track going away */ }
    showMetrics();
  }, 1000);
}

main().catch((e) => { state.error = e.message; setStatus(`could not join: ${e.message}`, "error"); });
