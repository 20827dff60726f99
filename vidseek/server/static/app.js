// The vidseek page: search, result cards, a player that jumps to the moment, job status.
"use strict";

const $ = (id) => document.getElementById(id);

function clock(seconds) {
  const s = Math.max(0, seconds);
  const m = Math.floor(s / 60);
  const rest = (s - 60 * m).toFixed(1).padStart(4, "0");
  return `${m}:${rest}`;
}

function say(text, isError = false) {
  $("message").textContent = text;
  $("message").className = isError ? "error" : "";
}

async function requestJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function renderResults(data) {
  const results = $("results");
  results.replaceChildren();
  if (!data.moments.length) {
    say(`No moments found for “${data.query}”.`);
    return;
  }
  say(`${data.moments.length} moments for “${data.query}” (${data.mode}, ${data.took_ms.toFixed(0)} ms)`);
  for (const m of data.moments) {
    const card = document.createElement("article");
    card.className = "card";
    card.dataset.testid = "result-card";
    card.dataset.start = m.start;
    card.tabIndex = 0;
    const img = document.createElement("img");
    img.src = m.thumbnail;
    img.alt = `${m.video} at ${clock(m.peak)}`;
    img.loading = "lazy";
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    thumb.append(img);
    if (m.box && m.width && m.height) {  // object hits: where the object is at the peak
      card.classList.add("object");
      card.dataset.kind = "object";
      const [x0, y0, x1, y1] = m.box;
      const mark = document.createElement("div");
      mark.className = "hit-box";
      mark.dataset.testid = "hit-box";
      Object.assign(mark.style, {
        left: `${(100 * x0) / m.width}%`, top: `${(100 * y0) / m.height}%`,
        width: `${(100 * (x1 - x0)) / m.width}%`, height: `${(100 * (y1 - y0)) / m.height}%`,
      });
      thumb.append(mark);
    }
    const body = document.createElement("div");
    body.className = "body";
    body.innerHTML = '<div class="name"></div><div class="range"></div><div class="score"></div>';
    body.querySelector(".name").textContent = m.video;
    body.querySelector(".range").textContent = `${clock(m.start)} – ${clock(m.end)}`;
    if (m.aired_at) {  // a live stream's moment: when it aired; a live badge
      const live = document.createElement("span");
      live.className = "live-badge";
      live.dataset.testid = "live-badge";
      live.textContent = `live · aired ${new Date(m.aired_at * 1000).toLocaleTimeString()}`;
      body.append(live);
    }
    if (!m.media) {
      const none = document.createElement("div");
      none.className = "no-media";
      none.textContent = "no media: the stream was not recorded";
      body.append(none);
      img.addEventListener("error", () => img.remove(), { once: true });
    }
    body.querySelector(".score").textContent = `score ${m.score.toFixed(3)}`
      + (m.presence != null ? ` · presence ${Math.round(100 * m.presence)} %` : "");  // grounded
    card.append(thumb, body);
    const open = () => play(m, card);
    card.addEventListener("click", open);
    card.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    results.append(card);
  }
}

let stopAt = null;
let current = null;  // the moment in the player

function play(moment, card) {
  if (!moment.media) return;  // a stream moment without a recording: nothing to play
  current = moment;
  document.querySelectorAll(".card.playing").forEach((c) => c.classList.remove("playing"));
  card.classList.add("playing");
  const player = $("player");
  $("player-panel").hidden = false;
  $("player-caption").textContent = `${moment.video}: ${clock(moment.start)} – ${clock(moment.end)}`;
  const offset = moment.media_offset || 0;  // a stream part's recording starts at its offset
  stopAt = moment.end - offset;
  const seek = () => {
    player.currentTime = moment.start - offset;
    player.play().catch(() => {});  // autoplay may be refused; the user presses play
  };
  if (player.dataset.src !== moment.media) {
    player.dataset.src = moment.media;
    player.src = moment.media;
    player.addEventListener("loadedmetadata", seek, { once: true });
  } else {
    seek();
  }
  player.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

$("player").addEventListener("timeupdate", () => {
  const player = $("player");
  if (stopAt !== null && player.currentTime >= stopAt) {
    player.pause();
    stopAt = null;
  }
});

// Object queries: pause, drag a box over the frame, search where that object appears.
function videoRect(player) {
  // the picture inside the element (letterboxed to keep its aspect ratio)
  const r = player.getBoundingClientRect();
  const scale = Math.min(r.width / player.videoWidth, r.height / player.videoHeight);
  const w = player.videoWidth * scale, h = player.videoHeight * scale;
  return { left: r.left + (r.width - w) / 2, top: r.top + (r.height - h) / 2, scale };
}

let dragFrom = null;

$("object-button").addEventListener("click", () => {
  const player = $("player");
  if (!current || !player.videoWidth) { say("Play a result first.", true); return; }
  player.pause();
  $("draw-layer").hidden = false;
  say("Drag a box around the object to look for.");
});

$("draw-layer").addEventListener("mousedown", (e) => {
  dragFrom = [e.clientX, e.clientY];
  Object.assign($("draw-box").style, { left: "0px", top: "0px", width: "0px", height: "0px" });
  $("draw-box").hidden = false;
});

$("draw-layer").addEventListener("mousemove", (e) => {
  if (!dragFrom) return;
  const layer = $("draw-layer").getBoundingClientRect();
  const [x0, y0] = dragFrom;
  Object.assign($("draw-box").style, {
    left: `${Math.min(x0, e.clientX) - layer.left}px`, top: `${Math.min(y0, e.clientY) - layer.top}px`,
    width: `${Math.abs(e.clientX - x0)}px`, height: `${Math.abs(e.clientY - y0)}px`,
  });
});

$("draw-layer").addEventListener("mouseup", async (e) => {
  if (!dragFrom) return;
  const player = $("player");
  const pic = videoRect(player);
  // the browser's picture size may differ from the stored one (rotation, aspect ratio):
  // boxes go to the server in the stored video's pixels
  const sx = (current.width || player.videoWidth) / player.videoWidth;
  const sy = (current.height || player.videoHeight) / player.videoHeight;
  const clampX = (x) => Math.round(sx * Math.min(player.videoWidth, Math.max(0, (x - pic.left) / pic.scale)));
  const clampY = (y) => Math.round(sy * Math.min(player.videoHeight, Math.max(0, (y - pic.top) / pic.scale)));
  const xs = [clampX(dragFrom[0]), clampX(e.clientX)].sort((a, b) => a - b);
  const ys = [clampY(dragFrom[1]), clampY(e.clientY)].sort((a, b) => a - b);
  dragFrom = null;
  $("draw-layer").hidden = true;
  $("draw-box").hidden = true;
  if (xs[1] - xs[0] < 2 || ys[1] - ys[0] < 2) { say("That box is too small; try again.", true); return; }
  const params = new URLSearchParams({
    video_id: current.video_id, t: player.currentTime.toFixed(2),
    box: `${xs[0]},${ys[0]},${xs[1]},${ys[1]}`, top_k: $("top-k").value,
  });
  say("Looking for that object…");
  try {
    renderResults(await requestJSON(`/api/search/object?${params}`));
  } catch (err) {
    say(err.message, true);
  }
});

$("search-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const q = $("query").value.trim();
  if (!q) { say("Type what you are looking for.", true); return; }
  const params = new URLSearchParams({ q, mode: $("mode").value, top_k: $("top-k").value });
  say("Searching…");
  try {
    renderResults(await requestJSON(`/api/search?${params}`));
  } catch (e) {
    $("results").replaceChildren();
    say(e.message, true);
  }
});

$("image").addEventListener("change", async () => {
  const file = $("image").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("image", file);
  form.append("top_k", $("top-k").value);
  say(`Searching by ${file.name}…`);
  try {
    renderResults(await requestJSON("/api/search/image", { method: "POST", body: form }));
  } catch (e) {
    say(e.message, true);
  }
  $("image").value = "";
});

async function refreshStatus() {
  try {
    const status = await requestJSON("/api/status");
    const rows = [["videos", status.videos], ["hours", status.hours.toFixed(2)],
                  ["encoder", status.encoder.split("/").pop()], ["modes", status.modes.join(", ")],
                  ["daemon", status.daemon.running ? "running" : "not in this server"]];
    $("archive-status").replaceChildren(...rows.flatMap(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      return [dt, dd];
    }));
    const grounded = $("mode").querySelector('option[value="grounded"]');
    grounded.disabled = !status.modes.includes("grounded");
    const jobs = await requestJSON("/api/jobs?limit=10");
    $("job-counts").replaceChildren(...Object.entries(jobs.counts).map(([k, v]) => {
      const span = document.createElement("span");
      span.className = `st-${k}`; span.textContent = `${k} ${v}`;
      return span;
    }));
    $("jobs").replaceChildren(...jobs.jobs.map((job) => {
      const li = document.createElement("li");
      li.className = `st-${job.status}`;
      li.dataset.testid = "job";
      li.title = job.error || job.path;
      li.textContent = `${job.status} · ${job.name}${job.error ? " · " + job.error : ""}`;
      return li;
    }));
  } catch (e) {
    $("archive-status").textContent = `status unavailable: ${e.message}`;
  }
}

refreshStatus();
setInterval(refreshStatus, 3000);
