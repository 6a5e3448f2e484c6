/* EdgeStream hub console: devices, pipelines and SQL over the hub's REST API (/api/openapi.json).
   Plain JavaScript, no build step, nothing fetched from anywhere but the hub. Live updates come from
   /api/events (Server-Sent Events read with fetch, so the API token travels in a header, never a URL). */
"use strict";

const state = {
  token: sessionStorage.getItem("edgestream-token") || "",
  view: null,          // the current view: {name, cleanup()}
  handlers: {},        // event name -> [fn]
  stream: null,        // AbortController of the event stream
  pipelines: null,     // the last /api/pipelines answer
};

// ---------------------------------------------------------------- helpers
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
const $ = (sel, root = document) => root.querySelector(sel);
const main = () => $("#main");
const fmt = (v) => v === null || v === undefined ? "–" : typeof v === "number" ? (Number.isInteger(v) ? v.toLocaleString("en") : v.toFixed(2)) : typeof v === "boolean" ? (v ? "yes" : "no") : String(v);
const bytes = (n) => n === null || n === undefined ? "–" : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`;
}
function table(caption, head, rows, opts = {}) {
  const t = el("table", {id: opts.id},
    el("caption", {text: caption}),
    el("thead", {}, el("tr", {}, head.map(([label, cls]) => el("th", {scope: "col", class: cls, text: label})))),
    el("tbody", {}, rows));
  return el("div", {class: "scroll", tabindex: "0", role: "region", "aria-label": caption}, t);
}
function td(v, cls) { return el("td", {class: cls}, v instanceof Node ? v : fmt(v)); }

// ---------------------------------------------------------------- the API
class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status; this.body = body || {};
  }
}
async function api(method, path, body, ctype = "application/json") {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers["Content-Type"] = ctype;
  const r = await fetch(path, {method, headers, body: body === undefined ? undefined :
                               ctype === "application/json" ? JSON.stringify(body) : body});
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) { askToken(); throw new ApiError(401, data); }
  if (!r.ok && r.status !== 202) throw new ApiError(r.status, data);
  return {status: r.status, data};
}
function askToken() {
  stopStream();
  const m = main();
  m.replaceChildren(el("h1", {text: "API token"}),
    el("p", {text: "This hub's API needs its token (api.token in hub.yaml)."}),
    el("form", {class: "stack", id: "token-form", onsubmit: (ev) => {
      ev.preventDefault();
      state.token = $("#token").value.trim();
      sessionStorage.setItem("edgestream-token", state.token);
      startStream(); route(true);
    }}, el("label", {for: "token", text: "Token"}),
        el("input", {id: "token", type: "password", autocomplete: "current-password", required: true}),
        el("div", {}, el("button", {type: "submit", text: "Use token"}))));
  $("#token").focus();
}

// ---------------------------------------------------------------- live events
function on(name, fn) { (state.handlers[name] ||= []).push(fn); return () => { state.handlers[name] = state.handlers[name].filter((f) => f !== fn); }; }
function setLive(text, s) { const l = $("#live"); l.textContent = text; l.dataset.state = s; }
function stopStream() { if (state.stream) { state.stream.abort(); state.stream = null; } }
async function startStream() {
  stopStream();
  const ctl = new AbortController();
  state.stream = ctl;
  for (let attempt = 0; !ctl.signal.aborted; attempt++) {
    try {
      const headers = state.token ? {Authorization: `Bearer ${state.token}`} : {};
      const r = await fetch("/api/events", {headers, signal: ctl.signal});
      if (r.status === 401) { askToken(); return; }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      setLive("live", "live");
      const reader = r.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buf += dec.decode(value, {stream: true});
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          let name = "message", data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event: ")) name = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (!data) continue;
          let payload;
          try { payload = JSON.parse(data); } catch (e) { continue; }
          if (name === "close") setLive(`reconnecting (${payload.reason})`, "down");
          for (const fn of state.handlers[name] || []) { try { fn(payload); } catch (e) { console.error(e); } }
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    setLive("reconnecting", "down");
    await new Promise((res) => setTimeout(res, Math.min(2000 * (attempt + 1), 10000)));
  }
}

// ---------------------------------------------------------------- router
const VIEWS = {devices: viewDevices, device: viewDevice, pipelines: viewPipelines, sql: viewSql};
function route(ev) {
  const [, name = "devices", arg] = (location.hash || "#/devices").split("/");
  const view = VIEWS[name] ? name : "devices";
  if (state.view && state.view.cleanup) state.view.cleanup();
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === (view === "device" ? "devices" : view)) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main().replaceChildren();
  state.view = {name: view, cleanup: null};
  VIEWS[view](decodeURIComponent(arg || ""), state.view).catch(showError);
  if (ev) main().focus({preventScroll: true});  // a new page: focus its content (not at load: the skip link comes first)
}
function showError(e) {
  if (e instanceof ApiError && e.status === 401) return;
  main().append(el("p", {class: "error", role: "alert", text: `Error: ${e.message}`}));
}

// ---------------------------------------------------------------- devices
const DEVICE_COLUMNS = [["Device"], ["Online"], ["Last seen"], ["Heap free", "num"], ["Loop lag ms", "num"],
  ["Config (reported/desired)"], ["Gaps", "num"], ["Missing", "num"], ["Dropped", "num"]];
function deviceRow(d) {
  const cfg = `${fmt(d.config_reported)}/${fmt(d.config_desired)} ${d.config_state}`;
  return el("tr", {"data-device": d.device},
    el("th", {scope: "row"}, el("a", {href: `#/device/${encodeURIComponent(d.device)}`, text: d.device})),
    td(el("span", {class: d.online ? "ok" : "bad", text: d.online ? "online" : "offline"})),
    td(ago(d.last_seen)), td(bytes(d.heap_free), "num"), td(d.loop_lag_ms, "num"),
    td(el("span", {class: d.config_state === "refused" ? "bad" : d.config_state === "pending" ? "warn" : "", text: cfg})),
    td(d.gaps, "num"), td(d.missing, "num"), td(d.results_dropped, "num"));
}
async function viewDevices(arg, view) {
  const m = main();
  m.append(el("h1", {text: "Devices"}));
  const {data} = await api("GET", "/api/devices");
  if (!data.enabled) {
    m.append(el("p", {text: "The device registry is off: add a devices section to hub.yaml (docs/hub.md, Devices)."}));
    return;
  }
  const body = el("tbody");
  const rows = new Map();
  const put = (d, flash) => {
    const tr = deviceRow(d);
    if (flash) tr.classList.add("flash");
    const old = rows.get(d.device);
    if (old) old.replaceWith(tr); else body.append(tr);
    rows.set(d.device, tr);
  };
  data.devices.forEach((d) => put(d, false));
  const t = table(`${data.devices.length} devices (updated live)`, DEVICE_COLUMNS, [], {id: "devices"});
  t.querySelector("tbody").replaceWith(body);
  m.append(t);
  if (!data.devices.length) m.append(el("p", {class: "muted", text: "No device has been heard yet."}));
  if (data.overflow) m.append(el("p", {class: "warn", text: `${data.overflow} devices are not tracked (devices.max_devices).`}));
  view.cleanup = on("devices", (ev) => {
    for (const d of ev.devices) {
      const focused = document.activeElement && rows.get(d.device) && rows.get(d.device).contains(document.activeElement);
      put(d, true);
      if (focused) rows.get(d.device).querySelector("a").focus();
    }
    t.querySelector("caption").textContent = `${rows.size} devices (updated live)`;
  });
}

// ---------------------------------------------------------------- one device
const COLORS = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207"];
function makePlot(fig, title, seriesNames, axes) {
  const width = Math.max(260, fig.clientWidth || 320);
  const opts = {width, height: 200, legend: {live: false},
    scales: {x: {time: true}},
    series: [{}, ...seriesNames.map((n, i) => ({label: n, stroke: COLORS[i % COLORS.length], width: 1.5,
                                                  scale: axes && axes[i] ? axes[i] : "y"}))],
    axes: [{}, {scale: "y", size: 64}, ...(axes && axes.includes("y2") ? [{scale: "y2", side: 1, size: 48, grid: {show: false}}] : [])]};
  const data = [[], ...seriesNames.map(() => [])];
  const u = new uPlot(opts, data, fig);
  const ro = new ResizeObserver(() => u.setSize({width: Math.max(260, fig.clientWidth), height: 200}));
  ro.observe(fig);
  return {u, data, ro, names: seriesNames};
}
function plotAdd(p, rows, fig, limit) {
  for (const [t, ...vals] of rows) { p.data[0].push(t / 1000); vals.forEach((v, i) => p.data[i + 1].push(v ?? null)); }
  const over = p.data[0].length - limit;
  if (over > 0) p.data.forEach((col) => col.splice(0, over));
  p.u.setData(p.data);
  fig.dataset.points = String(p.data[0].length);
}
async function viewDevice(dev, view) {
  const m = main();
  const {data} = await api("GET", `/api/devices/${encodeURIComponent(dev)}`);
  m.append(el("p", {}, el("a", {href: "#/devices", text: "All devices"})), el("h1", {text: `Device ${dev}`}));
  const facts = el("dl", {class: "facts", id: "facts"});
  const showFacts = (d) => facts.replaceChildren(...[
    ["Online", d.online ? "online" : "offline"], ["Last seen", ago(d.last_seen)], ["Link", d.link],
    ["Agent", d.agent_version], ["Firmware", d.firmware], ["Boot", d.boot], ["Reboots", d.reboots],
    ["Heap free", bytes(d.heap_free)], ["Loop lag ms", d.loop_lag_ms],
    ["Config", `${fmt(d.config_reported)}/${fmt(d.config_desired)} ${d.config_state}`],
    ["Last refusal", d.last_nack ? `v${d.last_nack_version}: ${d.last_nack}` : null],
    ["Results received", d.results_received], ["Gaps", d.gaps], ["Missing", d.missing],
    ["Dropped", d.results_dropped], ["Clock", d.clock_source]].map(([k, v]) =>
      el("div", {}, el("dt", {text: k}), el("dd", {text: fmt(v)}))));
  showFacts(data.device);
  m.append(el("section", {class: "card", "aria-labelledby": "h-state"}, el("h2", {id: "h-state", text: "State"}), facts));

  // plots: one per sensor/window with a line per aggregate, and the health over time
  const plots = el("div", {class: "plots"});
  m.append(el("section", {class: "card", "aria-labelledby": "h-plots"}, el("h2", {id: "h-plots", text: "Window results and health"}), plots));
  const LIMIT = 600;
  const series = new Map();  // "sensor/window" -> {fig, p}
  const addPoints = (pts) => {
    const byKey = new Map();
    for (const pt of pts) {
      const key = pt.window ? `${pt.sensor}/${pt.window}` : pt.sensor;
      (byKey.get(key) || byKey.set(key, []).get(key)).push(pt);
    }
    for (const [key, list] of byKey) {
      let s = series.get(key);
      if (!s) {
        const names = Object.keys(list[0].values);
        const fig = el("figure", {class: "plot", "data-series": key, "data-points": "0"}, el("figcaption", {text: key}));
        plots.prepend(fig);
        s = {fig, p: makePlot(fig, key, names)};
        series.set(key, s);
      }
      plotAdd(s.p, list.map((pt) => [pt.t, ...s.p.names.map((n) => pt.values[n])]), s.fig, LIMIT);
    }
  };
  const hfig = el("figure", {class: "plot", id: "health-plot", "data-points": "0"}, el("figcaption", {text: "Health: heap free (bytes, left) and loop lag (ms, right)"}));
  plots.append(hfig);
  const hp = makePlot(hfig, "health", ["heap free", "loop lag ms"], ["y", "y2"]);
  plotAdd(hp, data.health.map(([t, heap, lag]) => [t, heap, lag]), hfig, LIMIT);
  addPoints(data.results);
  if (!data.results.length) plots.prepend(el("p", {class: "muted", id: "no-results", text: "No window results seen yet; they appear as the device sends them."}));

  // config push
  const answer = el("p", {class: "answer", id: "config-answer", role: "status", "aria-live": "polite"});
  const area = el("textarea", {id: "config-json", name: "config", rows: 12, spellcheck: "false",
                               "aria-describedby": "config-help"});
  const form = el("form", {class: "stack", id: "config-form", onsubmit: async (ev) => {
    ev.preventDefault();
    let cfg;
    try { cfg = JSON.parse(area.value); } catch (e) { answer.className = "answer bad"; answer.textContent = `Not JSON: ${e.message}`; return; }
    const btn = form.querySelector("button"); btn.disabled = true;
    answer.className = "answer"; answer.textContent = "Sending; waiting for the device's answer…";
    try {
      const force = form.querySelector("#config-force").checked ? "&force=true" : "";
      const {data: r} = await api("PUT", `/api/devices/${encodeURIComponent(dev)}/config?wait=30${force}`, cfg);
      answer.className = `answer ${r.config_state === "applied" ? "ok" : r.config_state === "refused" ? "bad" : "warn"}`;
      answer.textContent = r.config_state === "applied" ? `Config version ${r.version} applied by ${dev}.` :
        r.config_state === "refused" ? `${dev} refused config version ${r.version}: ${r.last_nack}` :
        `Config version ${r.version} is desired; ${dev} has not answered yet (${r.online ? "online" : "offline"}): it gets it when it can.`;
    } catch (e) {
      answer.className = "answer bad"; answer.textContent = e.message;
    } finally { btn.disabled = false; }
  }}, el("label", {for: "config-json", text: "Desired config (agent.json)"}),
      el("p", {id: "config-help", class: "muted", text: "Checked with the agent's own validator first; without a version it gets the desired one + 1."}),
      area,
      el("label", {for: "config-force", class: "muted"},
         el("input", {type: "checkbox", id: "config-force", name: "force"}),
         " Force: the device applies it even when its version is not higher than the one it runs (to go back)"),
      el("div", {class: "row"}, el("div", {}, el("button", {type: "submit", text: "Push config"})),
        el("div", {}, el("button", {type: "button", class: "secondary", id: "send-time", onclick: async () => {
          try { await api("POST", `/api/devices/${encodeURIComponent(dev)}/time`); answer.className = "answer ok"; answer.textContent = `Time sent to ${dev}.`; }
          catch (e) { answer.className = "answer bad"; answer.textContent = e.message; }
        }, text: "Send the hub's time"}))), answer);
  m.append(el("section", {class: "card", "aria-labelledby": "h-config"}, el("h2", {id: "h-config", text: "Config"}), form));

  const offs = [
    on("devices", (ev) => { const d = ev.devices.find((x) => x.device === dev); if (d) {
      showFacts(d);
      if (d.uptime_ms !== null) plotAdd(hp, [[Date.now(), d.heap_free, d.loop_lag_ms]], hfig, LIMIT);
    } }),
    on("device_results", (ev) => { if (ev[dev]) { const n = $("#no-results"); if (n) n.remove(); addPoints(ev[dev]); } }),
  ];
  view.cleanup = () => { offs.forEach((f) => f()); for (const s of series.values()) { s.p.ro.disconnect(); s.p.u.destroy(); } hp.ro.disconnect(); hp.u.destroy(); };
}

// ---------------------------------------------------------------- pipelines
function recordText(r) { const s = JSON.stringify(r); return s.length > 300 ? s.slice(0, 300) + "…" : s; }
async function viewPipelines(arg, view) {
  const m = main();
  m.append(el("h1", {text: "Pipelines"}));
  const {data} = await api("GET", "/api/pipelines");
  state.pipelines = data;
  const cards = new Map();
  for (const p of data.pipelines) {
    const id = `p-${p.name}`;
    const stats = el("dl", {class: "facts", "data-stats": p.name});
    const results = el("tbody", {"data-results": p.name});
    const card = el("section", {class: "card", "aria-labelledby": id, "data-pipeline": p.name},
      el("h2", {id, text: p.name}),
      el("p", {class: "muted", text: `${p.from.join(", ")} → ${p.processors.map((x) => `${x.type} (${x.label})`).join(" → ") || "no processors"} → ${p.to.join(", ")}`}),
      stats,
      table(`Latest results of ${p.name}`, [["Record"]], []));
    card.querySelector("tbody").replaceWith(results);
    cards.set(p.name, {stats, results});
    m.append(card);
    api("GET", `/api/pipelines/${encodeURIComponent(p.name)}/results?limit=10`).then(({data: r}) => {
      results.replaceChildren(...r.results.slice().reverse().map((x) => el("tr", {}, el("td", {class: "wrap", text: recordText(x)}))));
    }).catch(showError);
  }
  const showStats = (d) => {
    for (const p of d.pipelines) {
      const c = cards.get(p.name);
      if (!c) continue;
      c.stats.replaceChildren(...[["In /s", p.rate_in], ["Out /s", p.rate_out], ["Records in", p.records_in],
        ["Records out", p.records_out], ["Queue", p.queue], ["Errors", p.errors], ["Dead letters", p.dead_letters],
        ["Late", p.late]].map(([k, v]) => el("div", {}, el("dt", {text: k}), el("dd", {text: fmt(v)}))));
    }
  };
  showStats(data);
  const srcBody = el("tbody"), sinkBody = el("tbody");
  const showTables = (d) => {
    srcBody.replaceChildren(...d.sources.map((s) => el("tr", {}, el("th", {scope: "row", text: s.name}), td(s.type),
      td(s.rate, "num"), td(s.records, "num"), td(s.decode_errors, "num"), td(s.gaps, "num"), td(s.missing, "num"), td(s.dead_letters, "num"))));
    sinkBody.replaceChildren(...d.sinks.map((s) => el("tr", {}, el("th", {scope: "row", text: s.name}), td(s.type),
      td(s.rate, "num"), td(s.records, "num"), td(s.queue, "num"), td(s.errors, "num"), td(s.dropped, "num"), td(s.dead_letters, "num"))));
  };
  showTables(data);
  const st = table("Sources", [["Source"], ["Type"], ["/s", "num"], ["Records", "num"], ["Decode errors", "num"], ["Gaps", "num"], ["Missing", "num"], ["Dead letters", "num"]], []);
  st.querySelector("tbody").replaceWith(srcBody);
  const kt = table("Sinks", [["Sink"], ["Type"], ["/s", "num"], ["Records", "num"], ["Queue", "num"], ["Errors", "num"], ["Dropped", "num"], ["Dead letters", "num"]], []);
  kt.querySelector("tbody").replaceWith(sinkBody);
  m.append(el("section", {class: "card", "aria-labelledby": "h-io"}, el("h2", {id: "h-io", text: "Sources and sinks"}), st, kt));

  const dlBody = el("tbody", {id: "dead-letters"});
  const dlRow = (x) => el("tr", {}, td(new Date(x.at_ms).toLocaleTimeString()), td(x.component), td(x.pipeline),
                                  el("td", {class: "wrap", text: x.reason}), el("td", {class: "wrap", text: recordText(x.record)}));
  dlBody.replaceChildren(...data.dead_letters.slice().reverse().map(dlRow));
  const dlt = table(`Latest dead letters (${data.dead_letters_total} in all)`, [["At"], ["Component"], ["Pipeline"], ["Reason"], ["Record"]], []);
  dlt.querySelector("tbody").replaceWith(dlBody);
  m.append(el("section", {class: "card", "aria-labelledby": "h-dl"}, el("h2", {id: "h-dl", text: "Dead letters"}), dlt));

  const offs = [
    on("pipelines", (d) => { showStats(d); showTables(d); dlt.querySelector("caption").textContent = `Latest dead letters (${d.dead_letters_total} in all)`; }),
    on("results", (ev) => {
      const c = cards.get(ev.pipeline);
      if (!c) return;
      for (const x of ev.records) c.results.prepend(el("tr", {class: "flash"}, el("td", {class: "wrap", text: recordText(x)})));
      while (c.results.children.length > 10) c.results.lastChild.remove();
    }),
    on("dead_letters", (ev) => {
      for (const x of ev.entries) dlBody.prepend(dlRow(x));
      while (dlBody.children.length > 100) dlBody.lastChild.remove();
    }),
    on("reload", () => route(false)),
  ];
  view.cleanup = () => offs.forEach((f) => f());
}

// ---------------------------------------------------------------- SQL
async function viewSql(arg, view) {
  const m = main();
  m.append(el("h1", {text: "SQL"}),
    el("p", {class: "muted", text: "Try a rule on the records a source saw last before you deploy it: EXPLAIN shows the plan, a test run the rows it gives."}));
  const {data} = await api("GET", "/api/pipelines");
  const select = el("select", {id: "sql-source", name: "source"},
    data.sources.map((s) => el("option", {value: s.name, text: `${s.name} (${s.type})`})));
  const query = el("textarea", {id: "sql-query", name: "query", rows: 6, spellcheck: "false",
    "aria-describedby": "sql-help"});
  query.value = sessionStorage.getItem("edgestream-sql") || "SELECT device, sensor, avg(avg) AS avg, count(*) AS n\nFROM s\nGROUP BY device, sensor, TUMBLINGWINDOW(ss, 10)";
  const last = el("input", {id: "sql-last", name: "last", type: "number", min: 1, value: 200, inputmode: "numeric"});
  const out = el("div", {id: "sql-output", "aria-live": "polite"});
  const run = async (kind) => {
    sessionStorage.setItem("edgestream-sql", query.value);
    out.replaceChildren(el("p", {class: "muted", text: "Running…"}));
    try {
      if (kind === "explain") {
        const {data: r} = await api("POST", "/api/sql/explain", {query: query.value});
        out.replaceChildren(el("h2", {text: "Plan"}), el("pre", {id: "sql-plan", text: r.plan}));
        return;
      }
      const body = {query: query.value, source: select.value, last: Number(last.value) || 200};
      const {data: r} = await api("POST", "/api/sql/run", body);
      const head = r.columns.map((c) => [c]);
      const rows = r.rows.map((row) => el("tr", {}, r.columns.map((c) => td(row[c] === undefined ? null : typeof row[c] === "object" && row[c] !== null ? JSON.stringify(row[c]) : row[c]))));
      const notes = [`${r.rows_total} rows from ${r.records_in} records in ${r.elapsed_ms} ms`];
      if (r.truncated) notes.push(`only the first ${r.rows.length} shown`);
      if (r.timed_out) notes.push("stopped at api.sql_timeout");
      if (r.dead_letters.count) notes.push(`${r.dead_letters.count} dead letters (first: ${r.dead_letters.first[0].reason})`);
      if (r.late) notes.push(`${r.late} late`);
      out.replaceChildren(el("h2", {text: "Rows"}), el("p", {id: "sql-summary", text: notes.join("; ")}),
        r.rows.length ? table(`Rows of the test run on ${select.value}`, head, rows, {id: "sql-rows"}) :
          el("p", {class: "muted", text: "No rows: no window closed, or no record passed (records are read in event time; windows still open are flushed at the end)."}));
    } catch (e) {
      const b = e.body || {};
      const where = b.line ? `line ${b.line}, column ${b.column}` : "";
      out.replaceChildren(el("div", {class: "error", role: "alert", id: "sql-error"},
        el("p", {text: where ? `Error at ${where}` : "Error"}), el("pre", {text: b.line ? `${b.excerpt}` : e.message}),
        b.line ? el("p", {text: e.message.split("\n")[0]}) : null));
      if (b.line) {
        const lines = query.value.split("\n");
        const at = lines.slice(0, b.line - 1).reduce((n, l) => n + l.length + 1, 0) + b.column - 1;
        query.focus(); query.setSelectionRange(at, at + 1);
      }
    }
  };
  m.append(el("form", {class: "stack", id: "sql-form", onsubmit: (ev) => { ev.preventDefault(); run("run"); }},
    el("label", {for: "sql-query", text: "Query"}),
    el("p", {id: "sql-help", class: "muted", text: "Streaming SQL as in a pipeline's sql processor (docs/sql.md). Ctrl+Enter runs it."}),
    query,
    el("div", {class: "row"},
      el("div", {}, el("label", {for: "sql-source", text: "Records of source"}), select),
      el("div", {}, el("label", {for: "sql-last", text: "Last records"}), last)),
    el("div", {class: "row"},
      el("div", {}, el("button", {type: "button", class: "secondary", id: "sql-explain", onclick: () => run("explain"), text: "Explain"})),
      el("div", {}, el("button", {type: "submit", id: "sql-run", text: "Test run"})))), out);
  query.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run("run"); } });
}

// ---------------------------------------------------------------- start
window.addEventListener("hashchange", route);
startStream();
route();
