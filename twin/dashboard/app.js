// Pilot-line twin dashboard: our own vanilla JS, SVG and canvas, no external network at run time.
// Pages by URL hash: #/line (process flow, live), #/trends, #/rollmap, #/genealogy/<id>, #/record/<id>, #/rootcause.
// Live data arrive as server-sent events read through fetch() (so the bearer token travels in a header, not the URL).
// Every call a page makes is bounded by the server (aggregated trends, binned roll maps, one entity's genealogy).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { token: localStorage.getItem("twin.token") || "", role: null, last: null, specs: {}, units: [],
  spcSignal: null, paths: new Set(), page: "line", arg: "", lineTime: null, trend: { range: 3600 } };
const RANK = { viewer: 1, operator: 2, engineer: 3 };
const STEP_NAMES = { mixing: "mixing", coating: "coating", drying: "drying", calendering: "calendering",
  slitting: "slitting", post_drying: "post-drying", dry_room: "dry room", assembly: "assembly", filling: "filling",
  formation: "formation", other: "other" };

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h["Authorization"] = "Bearer " + state.token;
  return h;
}

async function api(path, opts) {
  const o = Object.assign({}, opts || {});
  o.headers = headers(o.body ? { "Content-Type": "application/json" } : {});
  const t0 = performance.now();
  const r = await fetch(path, o);
  const text = await r.text();
  api.timings.push([path.split("?")[0], performance.now() - t0, r.status]);
  if (api.timings.length > 200) api.timings.shift();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { detail: text }; }
  if (!r.ok) { const e = new Error((body && body.detail) || r.statusText); e.status = r.status; throw e; }
  return body;
}
api.timings = [];  // [path, ms, status]: read by the browser test and the bench
window.twinTimings = api.timings;

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
function isoOf(ns) { return new Date(ns / 1e6).toISOString(); }
function localInput(ns) { const d = new Date(ns / 1e6); return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19); }
function fromLocalInput(v) { return v ? new Date(v).getTime() * 1e6 : null; }
function lineNow() { return state.lineTime || Date.now() * 1e6; }
function link(id) { return '<a href="#/record/' + encodeURIComponent(id) + '">' + esc(id) + "</a>"; }

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
function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function chart(svg, series, opts) {
  // series: [{points: [[x, y]...], color, dash, width}], opts: {band: [lo, hi], lines: [{y, color, dash}],
  // area: [[x, lo, hi]...], marks: [{x, label}], W, H, xfmt}
  clear(svg);
  const W = opts.W || 600, H = opts.H || 200, L = 52, R = 8, T = 8, B = 20;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  let xs = [], ys = [];
  for (const s of series) for (const p of s.points) { xs.push(p[0]); ys.push(p[1]); }
  for (const a of opts.area || []) { xs.push(a[0]); ys.push(a[1], a[2]); }
  if (opts.band) ys.push(opts.band[0], opts.band[1]);
  for (const l of opts.lines || []) ys.push(l.y);
  ys = ys.filter((v) => v !== null && v !== undefined && isFinite(v));
  if (opts.x0 !== undefined) xs.push(opts.x0, opts.x1);
  if (!xs.length || !ys.length) {
    el("text", { x: W / 2, y: H / 2, fill: "#8fa1b3", "text-anchor": "middle", "font-size": 13 }, svg).textContent =
      opts.empty || "waiting for data…";
    return;
  }
  let x0 = opts.x0 !== undefined ? opts.x0 : Math.min(...xs), x1 = opts.x1 !== undefined ? opts.x1 : Math.max(...xs);
  if (x1 === x0) x1 = x0 + 1;
  let y0 = Math.min(...ys), y1 = Math.max(...ys); const pad = (y1 - y0) * 0.08 || 1; y0 -= pad; y1 += pad;
  const sx = (x) => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  if (opts.band) {
    el("rect", { x: L, width: W - L - R, y: sy(opts.band[1]), height: Math.max(0, sy(opts.band[0]) - sy(opts.band[1])),
      fill: "rgba(63,185,80,0.12)", stroke: "#3fb950", "stroke-width": 0.6, class: "spec-band" }, svg);
  }
  for (const l of opts.lines || []) {
    if (l.y === null || l.y === undefined || !isFinite(l.y)) continue;
    el("line", { x1: L, x2: W - R, y1: sy(l.y), y2: sy(l.y), stroke: l.color, "stroke-dasharray": l.dash || "",
      "stroke-width": 1, class: l.cls || "" }, svg);
  }
  if (opts.area && opts.area.length) {
    const a = opts.area.filter((p) => p[1] !== null && p[2] !== null);
    const d = a.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[2]).toFixed(1)).join("") +
      a.slice().reverse().map((p) => "L" + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("") + "Z";
    el("path", { d: d, fill: "rgba(88,166,255,0.22)", stroke: "none", class: "minmax" }, svg);
  }
  for (let i = 0; i <= 4; i++) {
    const y = y0 + (y1 - y0) * i / 4;
    el("text", { x: L - 4, y: sy(y) + 4, fill: "#8fa1b3", "text-anchor": "end", "font-size": 10 }, svg).textContent = fmt(y, 4);
  }
  const xf = opts.xfmt || ((x) => fmt(x, 4));
  el("text", { x: L, y: H - 5, fill: "#8fa1b3", "font-size": 10 }, svg).textContent = xf(x0);
  el("text", { x: W - R, y: H - 5, fill: "#8fa1b3", "font-size": 10, "text-anchor": "end" }, svg).textContent = xf(x1);
  for (const s of series) {
    const pts = s.points.filter((p) => p[1] !== null && p[1] !== undefined && isFinite(p[1]));
    if (!pts.length) continue;
    const d = pts.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join("");
    el("path", { d: d, fill: "none", stroke: s.color, "stroke-width": s.width || 1.2, "stroke-dasharray": s.dash || "",
      class: s.cls || "" }, svg);
  }
  for (const m of opts.marks || []) {
    if (m.x < x0 || m.x > x1) continue;
    const g = el("g", { class: "setpoint-mark" }, svg);
    el("line", { x1: sx(m.x), x2: sx(m.x), y1: T, y2: H - B, stroke: "#d29922", "stroke-dasharray": "4 3",
      "stroke-width": 1.2 }, g);
    el("title", {}, g).textContent = m.label;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// line page: the process flow from the line description's work units, live
// ---------------------------------------------------------------------------------------------------------------
function unitsOrDefault(signals) {
  if (state.units.length) return state.units;
  // no line description: every station seen, alphabetically, as one step
  const seen = new Set(Object.keys(signals).map((k) => k.slice(0, k.lastIndexOf("/"))));
  return [...seen].sort().map((s) => ({ name: s, station: s, step: "other" }));
}

function keyValues(station, s) {
  // the unit's own signals: spec'd first, then measured ones; setpoints and array tracks left out
  const out = [];
  const prefix = station + "/";
  for (const key of Object.keys(s.signals)) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    if (name.includes("/") || name.endsWith("Setpoint") || /\.P\d+$/.test(name)) continue;
    out.push([name, key]);
  }
  out.sort((a, b) => (state.specs[b[1]] ? 1 : 0) - (state.specs[a[1]] ? 1 : 0) || a[0].localeCompare(b[0]));
  return out;
}

function sigHtml(name, key, v) {
  const spec = state.specs[key];
  let cls = v.quality !== "good" ? "bad" : "";
  if (spec && v.value !== null && (v.value < spec.lsl || v.value > spec.usl)) cls = "oos";
  return '<div class="sig ' + cls + '" data-signal="' + esc(key) + '" title="' + esc(key) + '"><span>' + esc(name) +
    '</span><span class="v">' + esc(fmt(v.value)) + " " + esc(v.unit || "") + "</span></div>";
}

function renderFlow(s) {
  const units = unitsOrDefault(s.signals);
  const states = s.station_states || {};
  const steps = [];
  const byStep = {};
  const known = new Set();
  for (const u of units) {
    known.add(u.station);
    if (!byStep[u.step]) { byStep[u.step] = []; steps.push(u.step); }
    byStep[u.step].push(u);
  }
  const html = [];
  steps.forEach((step, i) => {
    if (i) html.push('<div class="arrow">→</div>');
    html.push('<div class="step" data-step="' + esc(step) + '"><h3>' + esc(STEP_NAMES[step] || step) + "</h3>");
    for (const u of byStep[step]) html.push(unitHtml(u, s, states));
    html.push("</div>");
  });
  $("#flow").innerHTML = html.join("") || "<small>no stations yet</small>";
}

function unitHtml(u, s, states) {
  const st = states[u.station] || { state: "no_data", why: "no sample yet" };
  const subs = Object.keys(states).filter((k) => k.startsWith(u.station + "/")).sort();
  let unitState = st.state;
  if (subs.length && unitState === "no_data") {
    const ss = subs.map((k) => states[k].state);
    unitState = ss.includes("fault") ? "fault" : ss.includes("running") ? "running" : ss.includes("idle") ? "idle" : "no_data";
  }
  const h = ['<div class="unit ' + unitState + '" data-station="' + esc(u.station) + '" data-state="' + unitState +
    '" title="' + esc(u.station + ": " + unitState + (st.why ? " (" + st.why + ")" : "")) + '"><h4>' + esc(u.name) +
    '<span class="st">' + esc(unitState.replace("_", " ")) + "</span></h4>"];
  const kv = keyValues(u.station, s);
  for (const [name, key] of kv.slice(0, subs.length ? 3 : 6)) h.push(sigHtml(name, key, s.signals[key]));
  // what the machine shows as text: the roll or batch it runs
  const texts = s.texts || {};
  for (const key of Object.keys(texts).filter((k) => k.startsWith(u.station + "/") &&
      !k.slice(u.station.length + 1).includes("/") && /Id$/.test(k)).slice(0, 2)) {
    const t = texts[key].text;
    if (t) h.push('<div class="sig txt"><span>' + esc(key.slice(u.station.length + 1)) + '</span><span class="v">' +
      link(t) + "</span></div>");
  }
  if (subs.length) {
    // channels (a cycler's) as one compact grid: colour = state, number = the first measured value
    h.push('<div class="channels"' + (u.step === "formation" ? ' id="formation-grid"' : "") + ">");
    for (const k of subs) {
      const cs = states[k];
      const first = Object.keys(s.signals).find((x) => x.startsWith(k + "/") && /Voltage|Capacity/.test(x)) ||
        Object.keys(s.signals).find((x) => x.startsWith(k + "/"));
      const v = first ? s.signals[first] : null;
      const cell = texts[k + "/CellId"] ? texts[k + "/CellId"].text : "";
      h.push('<div class="ch ' + cs.state + '" data-channel="' + esc(k) + '" title="' + esc(k + ": " + cs.state +
        (cs.text ? " (" + cs.text + ")" : "") + (cell ? " · " + cell : "") + (v ? " · " + first.split("/").pop() +
        " " + fmt(v.value) + " " + (v.unit || "") : "")) + '">' + esc(k.slice(u.station.length + 1)) + "<br>" +
        (v && cs.state === "running" ? esc(fmt(v.value, 3)) : "&nbsp;") + "</div>");
    }
    h.push("</div>");
  }
  if (!kv.length && !subs.length) h.push("<small>" + esc(st.why || "") + "</small>");
  h.push("</div>");
  return h.join("");
}

async function renderSpc() {
  const sig = state.spcSignal;
  if (!sig) return;
  try {
    const charts = await api("/api/spc?points=true&signal=" + encodeURIComponent(sig));
    const c = charts[charts.length - 1];
    if (!c) { chart($("#spc"), [], {}); return; }
    $("#spc-title").textContent = c.roll + " · Cpk " + fmt(c.cpk, 3) + (c.out_of_control ? " · OUT OF CONTROL" : "");
    const pts = c.points;
    chart($("#spc"), [
      { points: pts.map((p) => [p[0], p[1]]), color: "#3d5a80", width: 0.8 },
      { points: pts.map((p) => [p[0], p[2]]), color: "#58a6ff", width: 1.8 },
      { points: pts.map((p) => [p[0], p[3]]), color: "#f85149", dash: "3 3" },
      { points: pts.map((p) => [p[0], p[4]]), color: "#f85149", dash: "3 3" },
    ], { lines: [{ y: c.target, color: "#3fb950", dash: "4 3" }], xfmt: (x) => fmt(x, 4) + " m" });
  } catch (e) { /* the next tick retries */ }
}

function liveText(live) {
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
  $("#recs tbody").innerHTML = rows.slice(0, 8).join("") || '<tr><td colspan="8"><small>no recommendations</small></td></tr>';
}

function renderAlarms(alarms) {
  $("#alarms tbody").innerHTML = alarms.map((a) => '<tr data-kind="' + esc(a.kind) + '"><td class="sev-' + a.severity +
    '">' + esc(a.kind) + "</td><td>" + esc(a.source) + "</td><td>" + esc(a.message) + "</td><td>" +
    (a.active ? "active" : "cleared") + (a.acked_by ? " · ack " + esc(a.acked_by) : "") + "</td><td>" +
    (a.acked_by ? "" : '<button class="ack" data-id="' + a.id + '"' + (can("operator") ? "" : " disabled") +
      ">ack</button>") + "</td></tr>").join("") || '<tr><td colspan="5"><small>no alarms</small></td></tr>';
}

function renderPreds(preds) {
  const rows = [];
  for (const p of preds.slice().reverse()) {
    for (const [k, v] of Object.entries(p.outputs || {})) {
      const sd = (p.std || {})[k];
      rows.push("<tr><td>" + (p.subject ? link(p.subject) : "") + "</td><td>" + esc(k) + '</td><td class="num">' +
        fmt(v) + (sd !== undefined && sd !== null ? " ± " + fmt(2 * sd, 2) : "") + "</td><td>" +
        (p.in_domain ? "ok" : '<span class="sev-warning">out</span>') + "</td><td><small>" +
        esc(p.model_version || "") + "</small></td></tr>");
    }
    if (rows.length > 24) break;
  }
  $("#preds tbody").innerHTML = rows.join("") || '<tr><td colspan="5"><small>no predictions yet</small></td></tr>';
}

function render(s) {
  state.last = s;
  if (s.line_time_ns) state.lineTime = s.line_time_ns;
  $("#line").textContent = s.line;
  const m = $("#mode"); m.textContent = s.mode; m.className = "badge mode " + s.mode;
  const sel = $("#mode-select"); if (document.activeElement !== sel) sel.value = s.mode;
  $("#updated").textContent = "updated " + new Date(s.time_ns / 1e6).toLocaleTimeString() +
    (s.line_time_ns ? " · line clock " + new Date(s.line_time_ns / 1e6).toISOString().slice(0, 19) + "Z" : "");
  fillSignalList(s.signals);
  if (fillRollmapSignals(s.signals) && state.page === "rollmap") loadRolls();
  if (state.page !== "line") return;  // the other pages draw on demand; the stream keeps the state current
  renderFlow(s);
  renderRecs(s.recommendations, s.refusals, s.live_recommendations);
  renderAlarms(s.alarms);
  renderPreds(s.predictions);
  const now = performance.now();
  if (!render.spcAt || now - render.spcAt > 3000) { render.spcAt = now; renderSpc(); }
}

// ---------------------------------------------------------------------------------------------------------------
// trends: any signals over a chosen range, aggregated by InfluxDB (mean, min … max per bucket)
// ---------------------------------------------------------------------------------------------------------------
function fillRollmapSignals(signals) {
  // cross-web profile gauges first (their tracks are <signal>.Pnnn), then the spec'd gauges
  const bases = [...new Set(Object.keys(signals).filter((k) => /\.P\d+$/.test(k)).map((k) => k.replace(/\.P\d+$/, "")))];
  const keys = [...bases.sort(), ...Object.keys(state.specs).filter((k) => !bases.includes(k))];
  const sel = $("#rm-signal");
  if (keys.join() === fillRollmapSignals.last) return false;
  fillRollmapSignals.last = keys.join();
  const keep = sel.value;
  sel.innerHTML = keys.map((k) => "<option>" + esc(k) + "</option>").join("");
  sel.value = keep && keys.includes(keep) && !(bases.length && !bases.includes(keep) && !fillRollmapSignals.chosen)
    ? keep : keys[0] || "";
  return true;
}

function fillSignalList(signals) {
  // what the line reports now, and the spec'd signals (stored even while the line is not connected)
  const keys = [...new Set([...Object.keys(signals), ...Object.keys(state.specs)])].filter((k) => !/\.P\d+$/.test(k)).sort();
  if (keys.length === fillSignalList.n) return;
  fillSignalList.n = keys.length;
  const sel = $("#trend-signals");
  const chosen = new Set([...sel.selectedOptions].map((o) => o.value));
  if (!chosen.size) for (const k of Object.keys(state.specs).slice(0, 2)) chosen.add(k);
  const f = $("#trend-filter").value.toLowerCase();
  sel.innerHTML = keys.filter((k) => !f || k.toLowerCase().includes(f) || chosen.has(k))
    .map((k) => "<option" + (chosen.has(k) ? " selected" : "") + ">" + esc(k) + "</option>").join("");
}

async function renderTrends() {
  const sel = [...$("#trend-signals").selectedOptions].map((o) => o.value).slice(0, 8);
  const signals = sel.length ? sel : Object.keys(state.specs).slice(0, 2);
  let end = fromLocalInput($("#trend-end").value), start = fromLocalInput($("#trend-start").value);
  if (!end || !start) {
    end = lineNow() + 1e9; start = end - state.trend.range * 1e9;
    $("#trend-end").value = localInput(end); $("#trend-start").value = localInput(start);
  }
  const box = $("#trend-charts");
  if (!signals.length) { box.innerHTML = "<small>choose signals</small>"; return; }
  const qs = signals.map((s) => "signal=" + encodeURIComponent(s)).join("&") + "&start=" + Math.round(start) +
    "&end=" + Math.round(end) + "&points=" + Math.min(600, Math.max(100, Math.round(box.clientWidth / 2) || 300));
  $("#trend-info").textContent = "loading…";
  try {
    const t = await api("/api/trend?" + qs);
    $("#trend-info").textContent = t.start.slice(0, 19) + " … " + t.end.slice(0, 19) + " · " + t.bucket_s +
      " s buckets · " + t.setpoint_changes.length + " setpoint writes";
    box.innerHTML = "";
    for (const s of t.series) {
      const title = document.createElement("div");
      title.className = "chart-title";
      title.textContent = s.signal + (s.unit ? " [" + s.unit + "]" : "") + (s.spec ? " · spec " + fmt(s.spec.lsl) +
        " … " + fmt(s.spec.usl) : "") + " · " + s.points.length + " buckets";
      box.appendChild(title);
      const svg = el("svg", { class: "trend", "data-signal": s.signal }, box);
      const marks = t.setpoint_changes.filter((m) => !m.signal || m.signal === s.signal ||
        s.signal.startsWith(m.signal)).map((m) => ({ x: m.time_ns, label: isoOf(m.time_ns) + " " + m.setpoint + ": " +
        fmt(m.before) + " → " + fmt(m.after) + " by " + m.who + (m.why ? " (" + m.why + ")" : "") }));
      chart(svg, [{ points: s.points.map((p) => [p[0], p[1]]), color: "#58a6ff", width: 1.4, cls: "mean" }], {
        W: 1200, H: 170, x0: t.start_ns, x1: t.end_ns, area: s.points.map((p) => [p[0], p[2], p[3]]),
        band: s.spec ? [s.spec.lsl, s.spec.usl] : null, marks: marks, empty: "no data in this range",
        lines: s.spec && s.spec.target !== null ? [{ y: s.spec.target, color: "#3fb950", dash: "4 3" }] : [],
        xfmt: (x) => new Date(x / 1e6).toISOString().slice(5, 19).replace("T", " "),
      });
    }
  } catch (e) { $("#trend-info").textContent = e.message; }
}

// ---------------------------------------------------------------------------------------------------------------
// roll map: machine direction x cross-web heat map of one roll, segments marked, click a segment for its record
// ---------------------------------------------------------------------------------------------------------------
function colour(v, lo, hi) {
  // blue (low) - green (target) - red (high), spec limits at the ends
  if (v === null || v === undefined) return [20, 26, 35];
  let t = (v - lo) / (hi - lo); t = Math.max(0, Math.min(1, t));
  const r = Math.round(t < 0.5 ? 40 : 40 + (t - 0.5) * 2 * 210), b = Math.round(t > 0.5 ? 40 : 40 + (0.5 - t) * 2 * 210);
  const g = Math.round(200 - Math.abs(t - 0.5) * 2 * 140);
  return [r, g, b];
}

async function loadRolls() {
  let sig = $("#rm-signal").value;
  if (!sig) return;
  const rollsOf = (g) => api("/api/rolls?signal=" + encodeURIComponent(g) + "&end=" + Math.round(lineNow() + 1e9) +
    "&limit=50");
  try {
    let r = await rollsOf(sig);
    if (state.page === "rollmap" && state.arg && !r.rolls.some((x) => x.roll === state.arg)) {
      // a roll named in the URL: the gauge that measured it (a handful of gauges at most)
      for (const o of [...$("#rm-signal").options].filter((o) => o.value !== sig)) {
        const other = await rollsOf(o.value);
        if (other.rolls.some((x) => x.roll === state.arg)) { r = other; sig = o.value; $("#rm-signal").value = sig; break; }
      }
    }
    const sel = $("#rm-roll");
    const keep = state.arg && r.rolls.some((x) => x.roll === state.arg) ? state.arg : sel.value;
    sel.innerHTML = r.rolls.map((x) => "<option>" + esc(x.roll) + "</option>").join("");
    if (keep && r.rolls.some((x) => x.roll === keep)) sel.value = keep;
    else if (r.rolls.length > 1) sel.value = r.rolls[1].roll;  // the newest complete roll (the first is still running)
    await renderRollmap();
  } catch (e) { $("#rm-info").textContent = e.message; }
}

async function renderRollmap() {
  const sig = $("#rm-signal").value, roll = $("#rm-roll").value;
  const cv = $("#rm-canvas"), ov = $("#rm-overlay");
  clear(ov);
  if (!sig || !roll) { $("#rm-info").textContent = "no roll measured yet"; return; }
  $("#rm-info").textContent = "loading " + roll + "…";
  try {
    const m = await api("/api/rollmap2d?signal=" + encodeURIComponent(sig) + "&roll=" + encodeURIComponent(roll));
    state.rollmap = m;
    const W = cv.width, H = cv.height, L = 46, B = 22, T = 16;
    const ctx = cv.getContext("2d");
    ctx.fillStyle = "#111a23"; ctx.fillRect(0, 0, W, H);
    const xs = m.x_m, n = m.tracks.length;
    const all = m.values.flat().filter((v) => v !== null);
    const lo = m.spec ? m.spec.lsl : Math.min(...all), hi = m.spec ? m.spec.usl : Math.max(...all);
    const x0 = m.from_m !== null ? Math.min(m.from_m, ...xs) : Math.min(...xs);
    const x1 = m.to_m !== null ? Math.max(m.to_m, ...xs) : Math.max(...xs);
    const sx = (x) => L + (x - x0) / ((x1 - x0) || 1) * (W - L - 6);
    const rowH = (H - T - B) / n;
    for (let j = 0; j < xs.length; j++) {
      const xa = sx(j ? (xs[j - 1] + xs[j]) / 2 : xs[j]), xb = sx(j < xs.length - 1 ? (xs[j] + xs[j + 1]) / 2 : xs[j]);
      for (let i = 0; i < n; i++) {
        const [r, g, b] = colour(m.values[i][j], lo, hi);
        ctx.fillStyle = "rgb(" + r + "," + g + "," + b + ")";
        ctx.fillRect(xa, T + i * rowH, Math.max(1, xb - xa + 0.5), rowH + 0.5);
      }
    }
    ctx.fillStyle = "#8fa1b3"; ctx.font = "11px system-ui";
    ctx.fillText(fmt(x0, 4) + " m", L, H - 6);
    ctx.textAlign = "right"; ctx.fillText(fmt(x1, 4) + " m (machine direction)", W - 6, H - 6);
    ctx.fillText(n > 1 ? "track 0" : "", L - 4, T + 10); if (n > 1) ctx.fillText(n - 1 + "", L - 4, H - B);
    ctx.textAlign = "left";
    ctx.fillText("roll " + m.roll, L, 12);
    // segment boundaries and IDs on the overlay (clickable)
    for (const s of m.segments) {
      const g = el("g", { class: "segment", "data-segment": s.id }, ov);
      el("rect", { x: sx(s.from_m), y: T, width: Math.max(1, sx(s.to_m) - sx(s.from_m)), height: H - T - B,
        fill: "rgba(255,255,255,0)", stroke: "#e3e8ee", "stroke-width": 1, "stroke-dasharray": "2 3" }, g);
      el("text", { x: sx(s.from_m) + 3, y: H - B - 4, fill: "#e3e8ee", "font-size": 10 }, g).textContent =
        s.id.split("-").slice(-1)[0];
      el("title", {}, g).textContent = s.id + ": " + fmt(s.from_m) + " … " + fmt(s.to_m) + " m" +
        (s.properties.mass_loading_mg_cm2_mean !== undefined ? " · mean " + fmt(s.properties.mass_loading_mg_cm2_mean) : "");
    }
    $("#rm-info").textContent = m.source + " · " + n + " track(s) x " + xs.length + " bins · " + fmt(m.from_m) + " … " +
      fmt(m.to_m) + " m · " + m.segments.length + " segments";
    $("#rm-scale").innerHTML = '<span class="sw" style="background:rgb(' + colour(lo, lo, hi) + ')"></span>' + fmt(lo) +
      (m.spec ? " (LSL)" : "") + ' <span class="sw" style="background:rgb(' + colour((lo + hi) / 2, lo, hi) + ')"></span>' +
      fmt((lo + hi) / 2) + ' <span class="sw" style="background:rgb(' + colour(hi, lo, hi) + ')"></span>' + fmt(hi) +
      (m.spec ? " (USL)" : "") + " · click a segment for its record";
    $("#rm-segments").innerHTML = m.segments.map((s) => link(s.id)).join("");
  } catch (e) { $("#rm-info").textContent = e.message; clear(ov); }
}

// ---------------------------------------------------------------------------------------------------------------
// genealogy: the upstream graph from a cell (or any entity) to the raw-material lots, each node a link
// ---------------------------------------------------------------------------------------------------------------
const TYPE_COLOUR = { Cell: "#1f6feb", FormationRun: "#8957e5", Stack: "#2f81f7", ElectrodeSheet: "#3fb950",
  SlitCoil: "#56d364", CalenderedRoll: "#2ea043", CoatedRoll: "#238636", RollSegment: "#196c2e",
  SlurryBatch: "#d29922", RawMaterialLot: "#bb8009" };

async function renderGenealogy(id) {
  const svg = $("#genealogy-graph"), out = $("#genealogy");
  clear(svg); out.innerHTML = "";
  if (!id) { $("#genealogy-info").textContent = "enter a cell, sheet, roll or batch ID"; return; }
  $("#cell-id").value = id;
  try {
    const g = await api("/api/genealogy/" + encodeURIComponent(id));
    drawGraph(svg, g);
    $("#genealogy-info").textContent = g.type + " · " + g.entities.length + " upstream entities · " +
      g.raw_material_lots.length + " raw-material lots";
    const versions = [...new Set((g.predictions || []).map((p) => p.model_version))];
    out.innerHTML = '<dl class="kv"><dt>equipment</dt><dd>' + esc(g.equipment.join(", ")) + "</dd><dt>predictions</dt><dd>" +
      esc(versions.join(", ") || "none") + "</dd><dt>record</dt><dd>" + link(g.id) + "</dd></dl>";
  } catch (e) { $("#genealogy-info").textContent = e.message; }
}

function drawGraph(svg, g) {
  // layers by distance from the root along the edges (child -> parent); one column per layer, root on the left
  const depth = { [g.id]: 0 };
  const parents = {};
  for (const e of g.edges) (parents[e.child] = parents[e.child] || []).push(e);
  const queue = [g.id];
  while (queue.length) {
    const c = queue.shift();
    for (const e of parents[c] || []) {
      if (depth[e.parent] === undefined || depth[e.parent] < depth[c] + 1) {
        if ((depth[e.parent] || 0) > 40) continue;
        depth[e.parent] = depth[c] + 1; queue.push(e.parent);
      }
    }
  }
  const types = Object.fromEntries(g.entities.map((e) => [e.id, e.type]));
  types[g.id] = g.type;
  const cols = [];
  for (const [id, d] of Object.entries(depth)) (cols[d] = cols[d] || []).push(id);
  cols.forEach((c) => c.sort((a, b) => (types[a] || "").localeCompare(types[b] || "") || a.localeCompare(b)));
  const NW = 150, NH = 30, GX = 46, GY = 8;
  const W = Math.max(cols.length * (NW + GX) + 10, 400), H = Math.max(...cols.map((c) => c.length)) * (NH + GY) + 20;
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.style.height = H + "px";
  const pos = {};
  cols.forEach((c, i) => c.forEach((id, j) => {
    pos[id] = [10 + i * (NW + GX), 10 + j * (NH + GY) + (H - 20 - c.length * (NH + GY)) / 2];
  }));
  for (const e of g.edges) {
    const a = pos[e.child], b = pos[e.parent];
    if (!a || !b) continue;
    const x1 = a[0] + NW, y1 = a[1] + NH / 2, x2 = b[0], y2 = b[1] + NH / 2;
    const p = el("path", { d: "M" + x1 + "," + y1 + " C" + (x1 + GX / 2) + "," + y1 + " " + (x2 - GX / 2) + "," + y2 +
      " " + x2 + "," + y2, fill: "none", stroke: "#3d4b5c", "stroke-width": 1.2 }, svg);
    if (e.from_m !== undefined) el("title", {}, p).textContent = e.child + " ← " + e.parent + " " + fmt(e.from_m) +
      " … " + fmt(e.to_m) + " m";
  }
  for (const [id, [x, y]] of Object.entries(pos)) {
    const a = el("a", { href: "#/record/" + encodeURIComponent(id), class: "node", "data-id": id }, svg);
    el("rect", { x: x, y: y, width: NW, height: NH, rx: 5, fill: TYPE_COLOUR[types[id]] || "#30363d",
      stroke: id === g.id ? "#fff" : "none" }, a);
    el("text", { x: x + 6, y: y + 12, fill: "#fff", "font-size": 10 }, a).textContent = types[id] || "?";
    el("text", { x: x + 6, y: y + 25, fill: "#fff", "font-size": 11, "font-weight": 600 }, a).textContent =
      id.length > 22 ? id.slice(0, 21) + "…" : id;
    el("title", {}, a).textContent = types[id] + " " + id;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// record: the cell record (GET /api/cells/{id}/record when the service has it), else what the genealogy knows
// ---------------------------------------------------------------------------------------------------------------
function kv(obj) {
  return '<dl class="kv">' + Object.entries(obj).map(([k, v]) => "<dt>" + esc(k) + "</dt><dd>" +
    (v !== null && typeof v === "object" ? esc(JSON.stringify(v)) : esc(fmt(v))) + "</dd>").join("") + "</dl>";
}

function statsTable(rows) {
  // rows: [{name, mean, min, max, std, n, cpk, unit}]
  return '<table class="small stats"><thead><tr><th>signal</th><th>mean</th><th>min</th><th>max</th><th>std</th>' +
    "<th>n</th><th>Cpk</th></tr></thead><tbody>" + rows.map((r) => "<tr><td>" + esc(r.name) + '</td><td class="num">' +
    fmt(r.mean) + '</td><td class="num">' + fmt(r.min) + '</td><td class="num">' + fmt(r.max) + '</td><td class="num">' +
    fmt(r.std, 3) + '</td><td class="num">' + fmt(r.n) + '</td><td class="num' + (r.cpk !== null && r.cpk !== undefined &&
    r.cpk < 1.33 ? " sev-warning" : "") + '">' + fmt(r.cpk, 3) + "</td></tr>").join("") + "</tbody></table>";
}

function statRows(obj) {
  // tolerant of the backend's shape: {signal: {mean, min, ...}} or [{signal, mean, ...}]
  if (Array.isArray(obj)) return obj.map((r) => Object.assign({ name: r.signal || r.name }, r));
  return Object.entries(obj || {}).filter(([, v]) => v && typeof v === "object" && "mean" in v)
    .map(([k, v]) => Object.assign({ name: k }, v));
}

function section(title, body, name) {
  return '<div class="rec-section"' + (name ? ' data-section="' + esc(name) + '"' : "") + "><h3>" + esc(title) +
    "</h3>" + body + "</div>";
}

function renderCellRecord(rec) {
  // GET /api/cells/{id}/record (docs/quality.md): per material the statistics of every process signal over the
  // stretch or window that went into the cell, assembly conditions, formation, predicted vs measured, lab, setpoints
  const parts = [];
  const g = rec.genealogy || {};
  parts.push(section("cell", kv({ cell: rec.cell, line: rec.line, cathode: (g.positive_electrode || []).join(", "),
    anode: (g.negative_electrode || []).join(", "), "InfluxDB statements": (rec.influxdb || {}).statements }) +
    '<p><a href="/api/cells/' + encodeURIComponent(rec.cell) + '/record?format=jsonld" download>BattINFO JSON-LD</a> · ' +
    '<a href="/api/cells/dataset?cells=' + encodeURIComponent(rec.cell) + '&format=csv" download>CSV row</a></p>',
    "cell"));
  const pvm = rec.predicted_vs_measured || [];
  parts.push(section("predicted vs measured", pvm.length ? '<table class="small"><tr><th>output</th><th>predicted ± 2σ</th>' +
    "<th>measured</th><th>error</th></tr>" + pvm.map((r) => "<tr><td>" + esc(r.output) + '</td><td class="num">' +
      fmt(r.predicted) + (r.std ? " ± " + fmt(2 * r.std, 2) : "") + '</td><td class="num">' + fmt(r.measured) +
      " <small>" + esc(r.measured_as) + '</small></td><td class="num">' + fmt(r.error, 3) + "</td></tr>").join("") +
    "</table>" : "<small>no prediction with a formation result to compare</small>", "predicted_vs_measured"));
  const formation = rec.formation || [];
  parts.push(section("formation", formation.map((f) => "<b>" + esc(f.id) + "</b> " + esc(f.channel || "") +
    kv(Object.fromEntries(Object.entries(f.results || {}).map(([k, v]) => [k, v && typeof v === "object" ? v.value : v]))))
    .join("") || "<small>not formed yet</small>", "formation"));
  const asm = rec.assembly || {};
  parts.push(section("assembly conditions", kv({ window: asm.window ? asm.window.start + " … " + asm.window.end : null,
    max_dew_point_C: asm.max_dew_point_C, source: asm.dew_point_source }) +
    (Object.keys(asm.signals || {}).length ? statsTable(statRows(asm.signals)) : ""), "assembly"));
  for (const m of rec.materials || []) {
    const where = m.basis === "roll stretch" ? fmt(m.from_m) + " … " + fmt(m.to_m) + " m" +
      (m.via_sheet ? " (via " + m.via_sheet + ")" : "") : m.basis === "time window" ? (m.station || "") + " " +
      (m.start || "").slice(0, 19) + " … " + (m.end || "").slice(11, 19) : m.basis;
    const rolls = m.basis === "roll stretch" ? ' <a href="#/rollmap/' + encodeURIComponent(m.id) + '">roll map</a>' : "";
    const rows = statRows(m.signals);
    parts.push(section(m.type + " " + m.id, "<p>" + link(m.id) + " · " + esc(where) + rolls + "</p>" +
      (rows.length ? statsTable(rows) : "<small>no process data in the store for it</small>"), "material"));
  }
  const lab = rec.lab || [];
  parts.push(section("lab results", lab.length ? '<table class="small"><tr><th>on</th><th>quantity</th><th>value</th>' +
    "<th>method</th><th>time</th></tr>" + lab.map((r) => "<tr><td>" + link(r.trace_id) + "</td><td>" + esc(r.quantity) +
      '</td><td class="num">' + fmt(r.value) + " " + esc(r.unit || "") + "</td><td>" + esc(r.method || "") + "</td><td>" +
      esc(String(r.time || "").slice(0, 19)) + "</td></tr>").join("") + "</table>" : "<small>none</small>", "lab"));
  const sp = rec.setpoint_changes || [];
  parts.push(section("setpoint changes that acted on its material", sp.length ? '<table class="small">' +
    sp.map((a) => "<tr><td>" + esc(String(a.time || a.time_ns || "").slice(0, 19)) + "</td><td>" +
      esc(a.target || a.setpoint || "") + '</td><td class="num">' + fmt(a.before) + " → " + fmt(a.after) + "</td><td>" +
      esc(a.who || "") + "</td></tr>").join("") + "</table>" : "<small>none</small>", "setpoint_changes"));
  return '<div class="rec-grid">' + parts.join("") + "</div>";
}

async function renderRecord(id) {
  const out = $("#record");
  if (!id) { out.innerHTML = "<small>open a cell, a roll segment or any trace ID (or click one anywhere)</small>"; return; }
  $("#record-id").value = id;
  $("#record-title").textContent = id;
  out.innerHTML = "<small>loading…</small>";
  const hasRecord = [...state.paths].some((p) => /^\/api\/cells\/\{[^}]+\}\/record$/.test(p));
  try {
    const g = await api("/api/genealogy/" + encodeURIComponent(id));
    const html = ['<p><a href="#/genealogy/' + encodeURIComponent(id) + '">genealogy graph</a> · ' + esc(g.type) +
      " on line " + esc(g.line) + "</p>"];
    if (g.type === "Cell" && hasRecord) {
      try {
        const rec = await api("/api/cells/" + encodeURIComponent(id) + "/record");
        html.push(renderCellRecord(rec));
        out.innerHTML = html.join(""); return;
      } catch (e) { html.push('<p class="sev-warning">cell record: ' + esc(e.message) + "</p>"); }
    } else if (g.type === "Cell") {
      html.push("<p><small>the cell record (GET /api/cells/{id}/record: process statistics over the material's " +
        "stretch, lab results) is not served by this twin yet; what the genealogy knows:</small></p>");
    }
    const ent = g.entities.find((e) => e.id === id) || {};
    const sections = [];
    sections.push(["entity", kv(Object.assign({ type: g.type, line: g.line }, ent.length_m !== undefined ?
      { length_m: ent.length_m } : {}, ent.polarity ? { polarity: ent.polarity } : {}))]);
    if (Object.keys(ent.measured || {}).length) sections.push(["measured", kv(Object.fromEntries(Object.entries(
      ent.measured).map(([k, v]) => [k, v.value])))]);
    for (const [step, p] of Object.entries(ent.parameters || {})) sections.push(["parameters (" + step + ")",
      kv(Object.fromEntries(Object.entries(p).map(([k, v]) => [k, v.value])))]);
    for (const f of g.formation || []) sections.push(["formation " + f.id, kv(Object.assign({ channel: f.channel },
      Object.fromEntries(Object.entries(f.results || {}).map(([k, v]) => [k, v.value]))))]);
    if ((g.predictions || []).length) {
      const formed = {};
      for (const f of g.formation || []) for (const [k, v] of Object.entries(f.results || {})) formed[k] = v.value;
      sections.push(["predictions vs measured", '<table class="small"><tr><th>output</th><th>predicted ± 2σ</th>' +
        "<th>measured</th><th>model</th></tr>" + g.predictions.flatMap((p) => Object.entries(p.outputs).map(([k, v]) =>
          "<tr><td>" + esc(k) + '</td><td class="num">' + fmt(v.value) + (v.std ? " ± " + fmt(2 * v.std, 2) : "") +
          '</td><td class="num">' + fmt(formed[k.replace(/^.*\./, "")] !== undefined ? formed[k.replace(/^.*\./, "")] :
            null) + '</td><td title="' + esc(p.model_version) + '"><small>' + esc(p.model_version.split("@")[0]) +
          "</small></td></tr>")).join("") + "</table>"]);
    }
    if (g.conditions && g.conditions.assembly_window) sections.push(["assembly conditions", kv({
      window: g.conditions.assembly_window.start + " … " + g.conditions.assembly_window.end,
      max_dew_point_C: g.conditions.max_dew_point_C, source: g.conditions.dew_point_source })]);
    if ((g.segments || []).length) sections.push(["roll segments in it", '<table class="small"><tr><th>sheet</th>' +
      "<th>segment</th><th>roll</th><th>m</th><th>measured</th></tr>" + g.segments.map((s) => "<tr><td>" + link(s.sheet) +
        "</td><td>" + link(s.segment) + '</td><td><a href="#/rollmap/' + encodeURIComponent(s.roll) + '">' + esc(s.roll) +
        "</a></td><td>" + fmt(s.from_m) + " … " + fmt(s.to_m) + "</td><td>" + esc(Object.entries(s.measured).map(([k, v]) =>
          k + " " + fmt(v.value)).join(", ")) + "</td></tr>").join("") + "</table>"]);
    if ((g.audits || []).length) sections.push(["setpoint changes that acted on it", '<table class="small">' +
      g.audits.map((a) => "<tr><td>" + esc(a.time) + "</td><td>" + esc(a.setpoint) + "</td><td>" + fmt(a.before) +
        " → " + fmt(a.after) + "</td><td>" + esc(a.who) + "</td></tr>").join("") + "</table>"]);
    sections.push(["upstream", Object.entries(g.by_type).map(([t, ids]) => "<b>" + esc(t) + "</b> " +
      ids.slice(0, 12).map(link).join(", ") + (ids.length > 12 ? " …" : "")).join("<br>")]);
    if (["CoatedRoll", "CalenderedRoll", "RollSegment", "SlurryBatch", "SlitCoil"].includes(g.type)) {
      try {
        const d = await api("/api/genealogy/" + encodeURIComponent(id) + "/downstream");
        sections.push(["cells made from it (" + d.count + ")", d.cells.slice(0, 60).map(link).join(", ") +
          (d.count > 60 ? " …" : "")]);
      } catch (e) { /* the downstream answer is optional */ }
    }
    html.push('<div class="rec-grid">' + sections.map(([t, b]) => '<div class="rec-section"><h3>' + esc(t) + "</h3>" +
      b + "</div>").join("") + "</div>");
    out.innerHTML = html.join("");
  } catch (e) { out.innerHTML = '<small class="sev-warning">' + esc(e.message) + "</small>"; }
}

// ---------------------------------------------------------------------------------------------------------------
// root cause: ranked upstream features that separate a set of cells from the rest (GET /api/rootcause)
// ---------------------------------------------------------------------------------------------------------------
async function renderRootcause(ev) {
  const out = $("#rootcause");
  if (!state.paths.has("/api/rootcause")) {
    out.innerHTML = "<small>the root-cause analysis (GET /api/rootcause) is not served by this twin</small>";
    return;
  }
  if (!ev) { if (!out.innerHTML) out.innerHTML = "<small>choose the cells to explain and press rank causes</small>"; return; }
  const sel = document.querySelector("input[name=rc-sel]:checked").value;
  const qs = new URLSearchParams({ top: "6" });
  if (sel === "failed") qs.set("formation_failed", "true");
  if (sel === "capacity") qs.set("capacity_below", $("#rc-capacity").value);
  if (sel === "list") qs.set("cells", $("#rc-cells").value.split(/[\s,]+/).filter(Boolean).join(","));
  out.innerHTML = "<small>ranking…</small>";
  try {
    const r = await api("/api/rootcause?" + qs.toString());
    const html = ["<p>" + fmt(r.selected) + " cells selected, " + fmt(r.rest) + " others" +
      (r.note ? ' · <span class="sev-warning">' + esc(r.note) + "</span>" : "") + "</p>"];
    const causes = r.causes || [];
    const imp = Object.fromEntries(((r.forest || {}).cause_importances || []).map((c) => [c.cause, c]));
    const maxd = Math.max(1e-9, ...causes.map((c) => Math.abs(c.cliffs_delta)));
    html.push('<table class="small" id="rc-table"><tr><th>#</th><th>cause</th><th>strongest feature</th>' +
      "<th>Cliff's δ</th><th></th><th>q (BH)</th><th>forest importance</th></tr>" + causes.map((c) => "<tr><td>" +
        c.rank + "</td><td><b>" + esc(c.cause) + "</b></td><td>" + esc(c.best_feature) + '</td><td class="num">' +
        fmt(c.cliffs_delta, 3) + '</td><td><span class="bar" style="width:' + Math.round(90 * Math.abs(c.cliffs_delta) /
          maxd) + 'px"></span></td><td class="num">' + fmt(c.q, 3) + '</td><td class="num">' +
        (imp[c.cause] ? fmt(imp[c.cause].importance_mean, 3) + " (#" + imp[c.cause].rank + ")" : "–") +
        "</td></tr>").join("") + "</table>");
    // the plots that support them: selected vs rest per feature, box and points
    html.push('<div class="rec-grid" id="rc-plots"></div>');
    out.innerHTML = html.join("");
    const box = $("#rc-plots");
    for (const p of (r.plots || []).slice(0, 6)) {
      const div = document.createElement("div");
      div.className = "rec-section";
      div.innerHTML = "<h3>" + esc(p.feature) + "</h3>";
      box.appendChild(div);
      boxPlot(el("svg", { class: "rc-plot" }, div), p);
    }
  } catch (e) { out.innerHTML = '<small class="sev-warning">' + esc(e.message) + "</small>"; }
}

function boxPlot(svg, p) {
  // two columns (selected, rest): box q1..q3 with the median, whiskers, and the points jittered beside
  const W = 420, H = 170, L = 52, T = 8, B = 20;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  const groups = [["selected", "#f85149"], ["rest", "#58a6ff"]];
  const all = groups.flatMap(([g]) => (p.values[g] || []).concat(p.box[g] ? [p.box[g].whisker_low, p.box[g].whisker_high] : []))
    .filter((v) => v !== null && isFinite(v));
  if (!all.length) return;
  let y0 = Math.min(...all), y1 = Math.max(...all); const pad = (y1 - y0) * 0.08 || 1; y0 -= pad; y1 += pad;
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  for (let i = 0; i <= 3; i++) {
    const y = y0 + (y1 - y0) * i / 3;
    el("text", { x: L - 4, y: sy(y) + 4, fill: "#8fa1b3", "text-anchor": "end", "font-size": 10 }, svg).textContent = fmt(y, 4);
  }
  groups.forEach(([g, colour], i) => {
    const cx = L + 70 + i * 170, b = p.box[g];
    el("text", { x: cx, y: H - 5, fill: "#8fa1b3", "text-anchor": "middle", "font-size": 11 }, svg).textContent =
      g + (b ? " (n " + b.n + ")" : "");
    if (!b) return;
    el("line", { x1: cx, x2: cx, y1: sy(b.whisker_low), y2: sy(b.whisker_high), stroke: colour }, svg);
    el("rect", { x: cx - 22, width: 44, y: sy(b.q3), height: Math.max(1, sy(b.q1) - sy(b.q3)), fill: "none",
      stroke: colour, "stroke-width": 1.5 }, svg);
    el("line", { x1: cx - 22, x2: cx + 22, y1: sy(b.median), y2: sy(b.median), stroke: colour, "stroke-width": 2 }, svg);
    (p.values[g] || []).slice(0, 400).forEach((v, k) => {
      el("circle", { cx: cx + 34 + ((k * 37) % 40), cy: sy(v), r: 1.6, fill: colour, opacity: 0.6 }, svg);
    });
  });
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
          if (ev === "state" && data.length) {
            const t0 = performance.now();
            render(JSON.parse(data.join("\n")));
            stream.renderMs = performance.now() - t0;
          }
        }
      }
    } catch (e) { setConn("reconnecting…", "down"); }
    await sleep(1500);
  }
}
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
function setConn(text, cls) { const c = $("#conn"); c.textContent = text; c.className = "badge " + cls; }

// ---------------------------------------------------------------------------------------------------------------
// pages and actions
// ---------------------------------------------------------------------------------------------------------------
function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  const page = ["line", "trends", "rollmap", "genealogy", "record", "rootcause"].includes(parts[0]) ? parts[0] : "line";
  state.page = page;
  state.arg = decodeURIComponent(parts.slice(1).join("/"));
  for (const m of document.querySelectorAll("main.page")) m.hidden = m.id !== "page-" + page;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  if (page === "line" && state.last) render(state.last);
  if (page === "trends") renderTrends();
  if (page === "rollmap") {
    if (state.arg) {
      // a roll named in the URL: pick a gauge that measured it
      const opt = $("#rm-roll"); if (![...opt.options].some((o) => o.value === state.arg)) opt.innerHTML += "<option>" + esc(state.arg) + "</option>";
      opt.value = state.arg;
    }
    loadRolls();
  }
  if (page === "genealogy") renderGenealogy(state.arg);
  if (page === "record") renderRecord(state.arg);
  if (page === "rootcause") renderRootcause(null);
  $("#lab-card").hidden = !state.paths.has("/api/lab");
}

async function signIn() {
  try {
    const me = await api("/api/whoami");
    state.role = me.role;
    $("#who").textContent = me.name + " (" + me.role + ")";
    $("#mode-select").disabled = !can("operator");
    const [cfg, spec] = await Promise.all([api("/api/config"), fetch("/openapi.json").then((r) => r.json()).catch(() => ({}))]);
    state.paths = new Set(Object.keys((spec && spec.paths) || {}));
    const svc = cfg.service || {};
    state.specs = (svc.live || {}).specs || {};
    state.units = (svc.dashboard || {}).stations || [];
    const keys = Object.keys(state.specs);
    $("#spc-signal").innerHTML = keys.map((k) => "<option>" + esc(k) + "</option>").join("");
    state.spcSignal = state.spcSignal || keys[0] || null;
    $("#spc-signal").value = state.spcSignal;
    fillRollmapSignals({});
    fillSignalList(state.last ? state.last.signals : {});
    const title = (cfg.line || {}).name || (svc.dashboard || {}).title;
    if (title) { $("#title").textContent = title; document.title = title + " · twin"; }
    route();
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

$("#rm-overlay").addEventListener("click", (ev) => {
  const g = ev.target.closest("g.segment");
  if (g) location.hash = "#/record/" + encodeURIComponent(g.dataset.segment);
});
$("#mode-select").addEventListener("change", async (ev) => {
  try {
    const r = await api("/api/mode", { method: "PUT", body: JSON.stringify({ mode: ev.target.value, why: "dashboard" }) });
    toast("mode: " + r.mode);
  } catch (e) { toast(e.message); if (state.last) ev.target.value = state.last.mode; }
});
$("#spc-signal").addEventListener("change", (ev) => { state.spcSignal = ev.target.value; renderSpc(); });
$("#rm-signal").addEventListener("change", () => { fillRollmapSignals.chosen = true; loadRolls(); });
$("#rm-roll").addEventListener("change", () => renderRollmap());
$("#trend-filter").addEventListener("input", () => { fillSignalList.n = -1; if (state.last) fillSignalList(state.last.signals); });
for (const b of document.querySelectorAll("[data-range]")) {
  b.addEventListener("click", () => {
    state.trend.range = Number(b.dataset.range);
    $("#trend-start").value = ""; $("#trend-end").value = "";
    renderTrends();
  });
}
$("#trend-form").addEventListener("submit", (ev) => { ev.preventDefault(); renderTrends(); });
$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  localStorage.setItem("twin.token", state.token);
  await signIn();
});
$("#genealogy-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  location.hash = "#/genealogy/" + encodeURIComponent($("#cell-id").value.trim());
});
$("#record-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  location.hash = "#/record/" + encodeURIComponent($("#record-id").value.trim());
});
$("#rc-form").addEventListener("submit", (ev) => { ev.preventDefault(); renderRootcause(ev); });
$("#lab-form").addEventListener("submit", async (ev) => {
  // POST /api/lab: good rows stored and linked, bad ones quarantined with their reason (shown here)
  ev.preventDefault();
  const f = $("#lab-file").files[0], out = $("#lab-result");
  if (!f) { out.innerHTML = "<small>choose a file</small>"; return; }
  try {
    const text = await f.text();
    const csv = !/^\s*[[{]/.test(text);
    const r = await fetch("/api/lab", { method: "POST", body: text,
      headers: headers({ "Content-Type": csv ? "text/csv" : "application/json" }) });
    const body = await r.json();
    if (!r.ok) throw new Error(body.detail || r.statusText);
    out.innerHTML = '<p class="lab-summary">' + body.stored + " rows stored, " + body.quarantined + " quarantined" +
      (body.quarantined ? " (" + esc(Object.entries(body.reasons).map(([k, v]) => k + " " + v).join(", ")) + ")" : "") +
      "</p>" + (body.refused.length ? '<div class="scroll"><table class="small" id="lab-refused"><tr><th>row</th>' +
      "<th>reason</th><th>detail</th></tr>" + body.refused.slice(0, 200).map((x) => "<tr><td>" + x.row + "</td><td>" +
        esc(x.reason) + "</td><td>" + esc(x.detail) + "</td></tr>").join("") + "</table></div>" : "");
    if (state.arg) renderRecord(state.arg);
  } catch (e) { out.innerHTML = '<small class="sev-warning">' + esc(e.message) + "</small>"; }
});
window.addEventListener("hashchange", route);

(async function main() {
  if (state.token) $("#token").value = state.token;
  route();
  await signIn();
  stream();
})();
