// Pilot-line twin dashboard: our own vanilla JS and SVG, no external network at run time.
// Live data arrive as server-sent events read through fetch() (so the bearer token travels in a header, not the URL).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { token: localStorage.getItem("twin.token") || "", role: null, last: null, specs: {},
  rollmapSignal: null, busy: false };
const RANK = { viewer: 1, operator: 2, engineer: 3 };

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

async function api(path, opts) {
  const o = Object.assign({}, opts || {});
  o.headers = headers(o.body ? { "Content-Type": "application/json" } : {});
  const r = await fetch(path, o);
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!r.ok) throw new Error((body && body.detail) || r.statusText);
  return body;
}

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg; t.style.display = "block";
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.style.display = "none"; }, 5000);
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "–";
  if (typeof v !== "number") return String(v);
  const d = digits === undefined ? 4 : digits;
  return Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v.toPrecision(d)).toString();
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function can(role) { return state.role && RANK[state.role] >= RANK[role]; }

// ---------------------------------------------------------------------------------------------------------------
// SVG charts
// ---------------------------------------------------------------------------------------------------------------
const NS = "http://www.w3.org/2000/svg";
function el(name, attrs, parent) {
  const e = document.createElementNS(NS, name);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

function chart(svg, series, opts) {
  // series: [{points: [[x, y]...], cls, color, dash}], opts: {band: [lo, hi], lines: [{y, color, dash}], yPad}
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const W = 600, H = 240, L = 48, R = 8, T = 8, B = 22;
  let xs = [], ys = [];
  for (const s of series) for (const p of s.points) { xs.push(p[0]); ys.push(p[1]); }
  if (opts.band) ys.push(opts.band[0], opts.band[1]);
  for (const l of opts.lines || []) ys.push(l.y);
  ys = ys.filter((v) => v !== null && isFinite(v));
  if (!xs.length || !ys.length) {
    el("text", { x: W / 2, y: H / 2, fill: "#8fa1b3", "text-anchor": "middle", "font-size": 13 }, svg).textContent =
      "waiting for data…";
    return;
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs); if (x1 === x0) x1 = x0 + 1;
  let y0 = Math.min(...ys), y1 = Math.max(...ys); const pad = (y1 - y0) * 0.08 || 1; y0 -= pad; y1 += pad;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  if (opts.band) {
    el("rect", { x: L, width: W - L - R, y: sy(opts.band[1]), height: Math.max(0, sy(opts.band[0]) - sy(opts.band[1])),
      fill: "rgba(63,185,80,0.15)", stroke: "#3fb950", "stroke-width": 0.5 }, svg);
  }
  for (const l of opts.lines || []) {
    if (l.y === null || !isFinite(l.y)) continue;
    el("line", { x1: L, x2: W - R, y1: sy(l.y), y2: sy(l.y), stroke: l.color, "stroke-dasharray": l.dash || "",
      "stroke-width": 1 }, svg);
  }
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    el("text", { x: L - 4, y: sy(y) + 4, fill: "#8fa1b3", "text-anchor": "end", "font-size": 10 }, svg).textContent = fmt(y, 4);
  }
  el("text", { x: L, y: H - 6, fill: "#8fa1b3", "font-size": 10 }, svg).textContent = fmt(x0, 4) + (opts.xunit || "");
  el("text", { x: W - R, y: H - 6, fill: "#8fa1b3", "font-size": 10, "text-anchor": "end" }, svg).textContent =
    fmt(x1, 4) + (opts.xunit || "");
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] !== null && isFinite(p[1]));
    if (!pts.length) continue;
    const d = pts.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("");
    el("path", { d: d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.2, "stroke-dasharray": s.dash || "",
      class: s.cls || "" }, svg);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// panels
// ---------------------------------------------------------------------------------------------------------------
function renderOverview(signals) {
  const groups = {};
  for (const key of Object.keys(signals).sort()) {
    const i = key.lastIndexOf("/");
    const station = key.slice(0, i), name = key.slice(i + 1);
    if (name.endsWith("Setpoint")) continue;
    (groups[station] = groups[station] || []).push([name, key, signals[key]]);
  }
  const box = $("#overview");
  const html = [];
  for (const station of Object.keys(groups)) {
    html.push('<div class="station" data-station="' + esc(station) + '"><h3>' + esc(station) + "</h3>");
    for (const [name, key, s] of groups[station].slice(0, 12)) {
      const spec = state.specs[key];
      let cls = s.quality !== "good" ? "bad" : "";
      if (spec && s.value !== null && (s.value < spec.lsl || s.value > spec.usl)) cls = "oos";
      html.push('<div class="sig ' + cls + '" data-signal="' + esc(key) + '"><span>' + esc(name) +
        '</span><span class="v">' + esc(fmt(s.value)) + " " + esc(s.unit || "") + "</span></div>");
    }
    html.push("</div>");
  }
  box.innerHTML = html.join("") || "<small>no signals yet</small>";
}

async function renderRollmap() {
  const sig = state.rollmapSignal;
  if (!sig) return;
  try {
    const rm = await api("/api/rollmap?signal=" + encodeURIComponent(sig));
    $("#rollmap-roll").textContent = rm.roll ? "roll " + rm.roll : "";
    $("#rollmap-cpk").textContent = rm.cpk !== undefined && rm.cpk !== null ? "Cpk " + fmt(rm.cpk, 3) : "";
    chart($("#rollmap"), [{ points: rm.points, color: "#58a6ff" }],
      { band: [rm.spec.lsl, rm.spec.usl], lines: [{ y: rm.spec.target, color: "#3fb950", dash: "4 3" }], xunit: " m" });
  } catch (e) { /* the next tick retries */ }
}

async function renderSpc(spc) {
  const tb = $("#spc-table tbody");
  tb.innerHTML = spc.slice().reverse().map((c) => "<tr><td>" + esc(c.signal) + "</td><td>" + esc(c.roll) +
    '</td><td class="num">' + c.n + '</td><td class="num">' + fmt(c.mean) + '</td><td class="num">' + fmt(c.ewma) +
    '</td><td class="num">' + fmt(c.lcl) + " … " + fmt(c.ucl) + '</td><td class="num ' +
    (c.cpk !== null && c.cpk < 1.33 ? "sev-warning" : "") + '">' + fmt(c.cpk, 3) + "</td></tr>").join("");
  const sig = state.rollmapSignal;
  if (!sig) return;
  try {
    const charts = await api("/api/spc?points=true&signal=" + encodeURIComponent(sig));
    const c = charts[charts.length - 1];
    if (!c) return;
    $("#spc-title").textContent = sig + " · " + c.roll + (c.out_of_control ? " · OUT OF CONTROL" : "");
    const pts = c.points;
    chart($("#spc"), [
      { points: pts.map((p) => [p[0], p[1]]), color: "#3d5a80", width: 0.8 },
      { points: pts.map((p) => [p[0], p[2]]), color: "#58a6ff", width: 1.8 },
      { points: pts.map((p) => [p[0], p[3]]), color: "#f85149", dash: "3 3" },
      { points: pts.map((p) => [p[0], p[4]]), color: "#f85149", dash: "3 3" },
    ], { lines: [{ y: c.target, color: "#3fb950", dash: "4 3" }], xunit: " m" });
  } catch (e) { /* retried */ }
}

function liveText(live) {
  // the live recommendation of each loop, re-evaluated on every gauge sample: what the next round would propose
  return Object.entries(live || {}).map(([loop, v]) => {
    if (v.kind !== "proposal") return loop + ": " + v.kind.replace(/_/g, " ");
    const moves = v.setpoints.map((s) => s[0].split("_").slice(0, 2).join(" ") + " " + fmt(s[1]) + "→" + fmt(s[2]));
    return loop + " now: " + moves.join(", ");
  }).join(" · ");
}

function renderRecs(recs, refusals, live) {
  // re-render only on change: a button must not be replaced under the operator's pointer
  const sig = JSON.stringify([recs.map((r) => [r.id, r.state]), state.role]);
  $("#refusals").textContent = live && Object.keys(live).length ? liveText(live)
    : Object.entries(refusals || {}).map(([k, v]) => k + ": " + v.kind).join(" · ");
  if (sig === renderRecs.last) return;
  renderRecs.last = sig;
  const tb = $("#recs tbody");
  const rows = recs.map((r) => {
    const p = r.proposal;
    const sp = p.setpoints.map((s) => esc(s.input) + ": " + fmt(s.before) + " → <b>" + fmt(s.after) + "</b>").join("<br>");
    const ef = p.expected.map((e) => esc(e.signal.split("/").slice(-1)[0]) + ": " + fmt(e.current) + " → <b>" +
      fmt(e.expected) + "</b> (target " + fmt(e.target) + ")").join("<br>");
    const act = r.state === "proposed"
      ? '<button class="approve" data-id="' + r.id + '"' + (can("operator") ? "" : " disabled") + '>approve</button> ' +
        '<button class="reject" data-id="' + r.id + '"' + (can("operator") ? "" : " disabled") + ">reject</button>"
      : esc(r.decided_by || "");
    return '<tr data-rec="' + r.id + '"><td>' + r.id + "</td><td>" + esc(p.loop) + '</td><td class="state-' + r.state +
      '">' + r.state + "</td><td>" + sp + "</td><td>" + ef + "</td><td>" + Math.round(p.confidence * 100) +
      " %</td><td><small>" + esc(p.model_version) + "</small></td><td>" + act + "</td></tr>";
  });
  tb.innerHTML = rows.join("") || '<tr><td colspan="8"><small>no recommendations</small></td></tr>';
}

function renderAlarms(alarms) {
  $("#alarms tbody").innerHTML = alarms.map((a) => '<tr><td class="sev-' + a.severity + '">' + esc(a.kind) +
    "</td><td>" + esc(a.source) + "</td><td>" + esc(a.message) + "</td><td>" + (a.active ? "active" : "cleared") +
    (a.acked_by ? " · ack " + esc(a.acked_by) : "") + "</td><td>" + (a.acked_by ? "" :
      '<button class="ack" data-id="' + a.id + '"' + (can("operator") ? "" : " disabled") + ">ack</button>") +
    "</td></tr>").join("") || '<tr><td colspan="5"><small>no alarms</small></td></tr>';
}

function renderPreds(preds) {
  const rows = [];
  for (const p of preds.slice().reverse()) {
    for (const [k, v] of Object.entries(p.outputs || {})) {
      const sd = (p.std || {})[k];
      rows.push("<tr><td>" + esc(p.subject || "") + "</td><td>" + esc(k) + '</td><td class="num">' + fmt(v) +
        (sd !== undefined && sd !== null ? " ± " + fmt(2 * sd, 2) : "") + "</td><td>" +
        (p.in_domain ? "ok" : '<span class="sev-warning">out</span>') + "</td><td><small>" +
        esc(p.model_version || "") + "</small></td></tr>");
    }
    if (rows.length > 24) break;
  }
  $("#preds tbody").innerHTML = rows.join("") || '<tr><td colspan="5"><small>no predictions yet</small></td></tr>';
}

function render(s) {
  state.last = s;
  $("#line").textContent = s.line;
  const m = $("#mode"); m.textContent = s.mode; m.className = "badge mode " + s.mode;
  const sel = $("#mode-select"); if (document.activeElement !== sel) sel.value = s.mode;
  $("#updated").textContent = "updated " + new Date(s.time_ns / 1e6).toLocaleTimeString();
  renderOverview(s.signals);
  renderRecs(s.recommendations, s.refusals, s.live_recommendations);
  renderAlarms(s.alarms);
  renderPreds(s.predictions);
  renderSpc(s.spc);
  renderRollmap();
}

// ---------------------------------------------------------------------------------------------------------------
// live stream: SSE over fetch, reconnecting
// ---------------------------------------------------------------------------------------------------------------
async function stream() {
  for (;;) {
    try {
      const r = await fetch("/api/stream", { headers: headers({ Accept: "text/event-stream" }) });
      if (r.status === 401 || r.status === 403) { setConn("sign in", "down"); await sleep(2000); continue; }
      if (!r.ok) throw new Error(r.statusText);
      setConn("live", "live");
      const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0 || (i = buf.indexOf("\r\n\r\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + (buf[i] === "\r" ? 4 : 2));
          let ev = "message", data = [];
          for (const line of block.split(/\r?\n/)) {
            if (line.startsWith("event:")) ev = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (ev === "state" && data.length) render(JSON.parse(data.join("\n")));
        }
      }
    } catch (e) { setConn("reconnecting…", "down"); }
    await sleep(1500);
  }
}
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
function setConn(text, cls) { const c = $("#conn"); c.textContent = text; c.className = "badge " + cls; }

// ---------------------------------------------------------------------------------------------------------------
// actions
// ---------------------------------------------------------------------------------------------------------------
async function signIn() {
  try {
    const me = await api("/api/whoami");
    state.role = me.role;
    $("#who").textContent = me.name + " (" + me.role + ")";
    $("#mode-select").disabled = !can("operator");
    const cfg = await api("/api/config");
    state.specs = ((cfg.service || {}).live || {}).specs || {};
    const sel = $("#rollmap-signal");
    sel.innerHTML = Object.keys(state.specs).map((k) => "<option>" + esc(k) + "</option>").join("");
    state.rollmapSignal = state.rollmapSignal || Object.keys(state.specs)[0] || null;
    sel.value = state.rollmapSignal;
    const title = ((cfg.service || {}).dashboard || {}).title;
    if (title) $("#title").textContent = title;
  } catch (e) { state.role = null; $("#who").textContent = e.message; }
}

document.addEventListener("click", async (ev) => {
  const b = ev.target.closest("button[data-id]");
  if (!b || b.disabled) return;
  const id = b.dataset.id;
  try {
    if (b.classList.contains("approve")) {
      const r = await api("/api/recommendations/" + id + "/approve", { method: "POST",
        body: JSON.stringify({ note: "approved from the dashboard" }) });
      toast("recommendation " + id + ": " + r.state);
    } else if (b.classList.contains("reject")) {
      const note = prompt("why reject?") || "rejected from the dashboard";
      await api("/api/recommendations/" + id + "/reject", { method: "POST", body: JSON.stringify({ note: note }) });
      toast("recommendation " + id + " rejected");
    } else if (b.classList.contains("ack")) {
      await api("/api/alarms/" + id + "/ack", { method: "POST" });
      toast("alarm " + id + " acknowledged");
    }
  } catch (e) { toast(e.message); }
});

$("#mode-select").addEventListener("change", async (ev) => {
  try {
    const r = await api("/api/mode", { method: "PUT", body: JSON.stringify({ mode: ev.target.value, why: "dashboard" }) });
    toast("mode: " + r.mode);
  } catch (e) { toast(e.message); if (state.last) ev.target.value = state.last.mode; }
});

$("#rollmap-signal").addEventListener("change", (ev) => { state.rollmapSignal = ev.target.value; renderRollmap(); });

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  localStorage.setItem("twin.token", state.token);
  await signIn();
});

$("#genealogy-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const id = $("#cell-id").value.trim();
  const out = $("#genealogy");
  try {
    const g = await api("/api/genealogy/" + encodeURIComponent(id));
    out.innerHTML = "<pre>" + esc(JSON.stringify(g, null, 2)) + "</pre>";
  } catch (e) { out.innerHTML = '<small class="sev-warning">' + esc(e.message) + "</small>"; }
});

(async function main() {
  if (state.token) $("#token").value = state.token;
  await signIn();
  stream();
})();
