// The console page: one EventSource on /api/events; each "snapshot" event redraws
// the page. Nothing is loaded from anywhere else.
"use strict";

// loadId tells a test that the page was not reloaded; snapshots counts redraws.
window.hikkoshi = { loadId: Math.random().toString(36).slice(2), snapshots: 0, last: null };

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// word turns an enum value into a word: JOB_STATE_RUNNING → running.
function word(v, prefix) {
  if (!v) return "-";
  return String(v).replace(prefix, "").toLowerCase().replace(/_/g, " ");
}

function stateClass(s) {
  if (/SUCCEEDED|DONE|APPLIED|CUT_OVER|ACTIVE|ONLINE|DECOMMISSIONED/.test(s)) return "ok";
  if (/FAILED|ERROR|ABORTED|CANCELLED|OFFLINE/.test(s)) return "bad";
  if (/RUNNING|APPLYING|QUEUED|PENDING|MOVING|ROLLING/.test(s)) return "run";
  if (/PAUSED|WAIT|DEGRADED|REVERTED/.test(s)) return "warn";
  return "";
}

function state(v, prefix) {
  return el("span", { class: "state " + stateClass(v || ""), "data-state": v || "" }, word(v, prefix));
}

function bytes(n) {
  n = Number(n || 0);
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function duration(s) {
  s = Number(s || 0);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function since(t) {
  if (!t) return "-";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(t)) / 1000));
  return duration(s) + " ago";
}

function fill(tbody, rows, empty, cols) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { class: "dim", colspan: String(cols) }, empty))]));
}

function renderWaves(s) {
  const byWave = new Map();
  for (const w of s.workloads) {
    const n = w.wave || 0;
    if (!byWave.has(n)) byWave.set(n, []);
    byWave.get(n).push(w);
  }
  $("#workload-count").textContent = s.workloads.length + " workloads";
  const waves = [...byWave.keys()].sort((a, b) => (a || 1e9) - (b || 1e9));
  const out = waves.map((n) => el("div", { class: "wave" },
    el("h3", {}, n ? "Wave " + n : "Not in a wave"),
    el("div", { class: "cards" }, byWave.get(n).map((w) => {
      const name = w.displayName || (w.facts && w.facts.instance && w.facts.instance.name) || w.name;
      return el("div", { class: "card", "data-workload": w.name },
        el("div", { class: "name" }, name),
        el("div", { class: "meta" }, (w.role || "no role") + (w.stateful ? " · stateful" : "") + " · " + word(w.kind, "WORKLOAD_KIND_")),
        state(w.state, "WORKLOAD_STATE_"));
    }))));
  $("#waves").replaceChildren(...(out.length ? out : [el("p", { class: "dim" }, "no workloads yet")]));
}

function renderRuns(s) {
  const out = s.runs.map((r) => el("div", { class: "wave", "data-run": r.name },
    el("h3", {}, r.name + " · wave " + r.wave + " → " + (r.destination || "-") + " ", state(r.state, "RUN_STATE_"), " ",
      el("span", { class: "dim" }, r.stateReason || "")),
    el("table", {}, el("tbody", {}, (r.workloads || []).map((w) => el("tr", {},
      el("td", {}, w.displayName || w.workload), el("td", {}, w.role || "-"), el("td", {}, word(w.strategy, "STRATEGY_")),
      el("td", {}, word(w.step, "RUN_STEP_")), el("td", {}, state(w.stepState, "STEP_STATE_")),
      el("td", { class: "mono" }, w.job || ""), el("td", { class: "dim" }, w.error || "")))))));
  $("#runs").replaceChildren(...(out.length ? out : [el("p", { class: "dim" }, "no wave runs yet")]));
}

function progress(j) {
  const p = j.progress || {};
  const total = Number(p.totalBytes || 0), done = Number(p.doneBytes || 0);
  if (!total) return el("span", { class: "dim" }, j.waiting || "-");
  const pct = Math.floor((done * 100) / total);
  return el("span", { class: "bar", title: bytes(done) + " of " + bytes(total) },
    el("i", { style: "width:" + pct + "%" }), el("b", {}, pct + "% · " + bytes(done) + " / " + bytes(total)));
}

function renderJobs(s) {
  const rows = s.jobs.map((j) => {
    const p = j.progress || {};
    const copying = Number(p.totalBytes || 0) > Number(p.doneBytes || 0);
    return el("tr", { "data-job": j.name },
      el("td", { class: "mono" }, j.name), el("td", {}, j.workload || "-"), el("td", {}, j.p2vSource ? "P2V" : "V2V"),
      el("td", { title: j.error || "" }, state(j.state, "JOB_STATE_")), el("td", { "data-step": j.step || "" }, word(j.step, "JOB_STEP_")),
      el("td", {}, progress(j)),
      el("td", {}, copying && p.bytesPerSecond ? bytes(p.bytesPerSecond) + "/s" : "-"),
      el("td", {}, copying && p.etaSeconds ? duration(p.etaSeconds) : "-"),
      el("td", { class: "dim" }, j.worker || (j.error ? "" : "-")));
  });
  fill($("#jobs tbody"), rows, "no conversion jobs yet", 9);
}

function renderBridges(s) {
  const rows = s.bridges.map((b) => el("tr", { "data-bridge": b.name },
    el("td", {}, b.name), el("td", {}, word(b.mode, "BRIDGE_MODE_")), el("td", {}, state(b.state, "BRIDGE_STATE_")),
    el("td", { class: "mono" }, (b.old && b.old.cloud) + " " + ((b.old && b.old.networkId) || "").slice(0, 8)),
    el("td", {}, (b.new && b.new.cloud) + " " + ((b.new && b.new.networkName) || "")),
    el("td", { class: "mono" }, (b.moved || []).map((m) => m.ipAddress).join(", ") || "-")));
  fill($("#bridges tbody"), rows, "no bridges yet", 6);
}

function renderServices(s) {
  const rows = s.services.map((r) => el("tr", {},
    el("td", {}, r.service), el("td", { class: "mono" }, r.instance), el("td", { class: "mono" }, r.address), el("td", { class: "dim" }, since(r.started))));
  fill($("#services tbody"), rows, "nothing registered", 4);
}

function renderLBs(s) {
  const out = s.loadBalancers.map((lb) => {
    const members = [];
    for (const l of lb.listeners || []) {
      for (const m of (l.pool && l.pool.members) || []) {
        members.push(el("tr", {},
          el("td", {}, (l.protocol || "") + ":" + (l.port || "")), el("td", {}, (l.pool.protocol || "")),
          el("td", {}, m.displayName || "-"), el("td", { class: "mono" }, m.address + ":" + m.port),
          el("td", {}, state((m.status || {}).operatingStatus, "")), el("td", { class: "dim" }, (m.status || {}).provisioningStatus || "")));
      }
    }
    return el("div", { class: "wave", "data-lb": lb.name },
      el("h3", {}, (lb.displayName || lb.name) + " · VIP " + ((lb.vip || {}).address || "-") + " ", state((lb.status || {}).operatingStatus, "")),
      el("table", {}, el("tbody", {}, members.length ? members : [el("tr", {}, el("td", { class: "dim" }, "no members"))])));
  });
  $("#lbs").replaceChildren(...(out.length ? out : [el("p", { class: "dim" }, "no load balancers yet")]));
}

function render(s) {
  window.hikkoshi.snapshots++;
  window.hikkoshi.last = s;
  const errs = Object.entries(s.errors || {});
  $("#errors").hidden = errs.length === 0;
  $("#errors").replaceChildren(...errs.map(([k, v]) => el("div", {}, k + ": " + v)));
  renderWaves(s);
  renderRuns(s);
  renderJobs(s);
  renderBridges(s);
  renderServices(s);
  renderLBs(s);
  $("#updated").textContent = "updated " + new Date(s.time).toLocaleTimeString();
}

function connect() {
  const status = $("#status");
  const es = new EventSource("api/events");
  es.addEventListener("snapshot", (ev) => {
    status.className = "status live";
    status.textContent = "live";
    render(JSON.parse(ev.data));
  });
  es.onerror = () => {
    status.className = "status down";
    status.textContent = "reconnecting…";
  };
}

connect();
