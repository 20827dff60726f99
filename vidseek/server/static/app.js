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
    const body = document.createElement("div");
    body.className = "body";
    body.innerHTML = '<div class="name"></div><div class="range"></div><div class="score"></div>';
    body.querySelector(".name").textContent = m.video;
    body.querySelector(".range").textContent = `${clock(m.start)} – ${clock(m.end)}`;
    body.querySelector(".score").textContent = `score ${m.score.toFixed(3)}`;
    card.append(img, body);
    const open = () => play(m, card);
    card.addEventListener("click", open);
    card.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    results.append(card);
  }
}

let stopAt = null;

function play(moment, card) {
  document.querySelectorAll(".card.playing").forEach((c) => c.classList.remove("playing"));
  card.classList.add("playing");
  const player = $("player");
  $("player-panel").hidden = false;
  $("player-caption").textContent = `${moment.video}: ${clock(moment.start)} – ${clock(moment.end)}`;
  stopAt = moment.end;
  const seek = () => {
    player.currentTime = moment.start;
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
