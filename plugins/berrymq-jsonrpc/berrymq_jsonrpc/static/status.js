// The live page of a berryMQ node: polls /status every second (and /network every five)
// and draws what it gets. Everything comes from this node: no library, no outside request.
// Text from the network is only ever set with textContent, never parsed as HTML.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const params = new URLSearchParams(location.search);
  const secret = params.get("secret");
  if (secret !== null) {  // keep the secret out of the address bar and the history
    params.delete("secret");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? "?" + rest : ""));
  }
  // A header carries bytes: the secret's UTF-8, a character per byte, as curl sends it
  // (fetch refuses a header with a letter past U+00FF, and would send é as Latin-1).
  const bearer = secret === null ? "" : String.fromCharCode(...new TextEncoder().encode(secret));
  const headers = secret === null ? {} : { Authorization: "Bearer " + bearer };
  const $ = (id) => document.getElementById(id);
  const points = { in: [], out: [], bytes: [] };  // [uptime, rate] for the charts
  const MAX_POINTS = 120;
  const TIMEOUT_MS = 3000;  // a request not answered by then fails: the node may be hung
  let paused = false, timer = null, lastNetwork = 0, lastSample = null;
  let running = null;  // the refresh under way, if any: never two at once
  let identity = null, restarted = "";  // the node's identity; "restarted at ..." once it changed

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function human(n) {
    if (n === null || n === undefined) return "–";
    const units = ["", "k", "M", "G", "T"];
    let i = 0; let v = Number(n);
    while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (i ? v.toFixed(v < 10 ? 1 : 0) : String(Math.round(v * 100) / 100)) + units[i];
  }
  function age(s) {
    s = Math.max(0, Math.floor(s));
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function fill(id, rows, columns, empty) {
    const body = $(id).tBodies[0];
    const fresh = document.createElement("tbody");
    if (!rows.length) {
      const td = el("td", empty, "empty"); td.colSpan = columns; fresh.appendChild(el("tr")).appendChild(td);
    }
    for (const cells of rows) {
      const tr = el("tr");
      for (const cell of cells) {
        const td = typeof cell === "object" && cell !== null ? el("td", cell.text, cell.cls) : el("td", cell);
        tr.appendChild(td);
      }
      fresh.appendChild(tr);
    }
    body.replaceWith(fresh);
  }
  const num = (v) => ({ text: human(v), cls: "num" });

  function chart(id, data, color) {
    const box = $(id);
    box.replaceChildren();
    const W = 300, H = 70, top = 12;
    const max = Math.max(1, ...data.map((p) => p[1]));
    const y = (rate) => H - 1 - (Math.min(Math.max(rate, 0), max) / max) * (H - top - 2);
    box.appendChild(svg("text", { x: 2, y: 10, fill: "#6b7280", "font-size": 9 }, "max " + human(max) + "/s"));
    box.appendChild(svg("line", { x1: 0, y1: H - 0.5, x2: W, y2: H - 0.5, stroke: "#e5e7eb" }));
    if (data.length < 2) return;
    const t0 = data[0][0], t1 = data[data.length - 1][0], span = Math.max(1, t1 - t0);
    const xy = data.map((p) => [Math.min(Math.max((p[0] - t0) / span, 0), 1) * W, y(p[1])]);
    const line = xy.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" ");
    box.appendChild(svg("polygon", { points: "0," + H + " " + line + " " + W + "," + H, fill: color, "fill-opacity": 0.12 }));
    box.appendChild(svg("polyline", { points: line, fill: "none", stroke: color, "stroke-width": 1.6 }));
  }

  function restart() {
    // a new node (or its counters went down): the rates of the old one mean nothing now
    for (const key of Object.keys(points)) points[key] = [];
    lastSample = null;
    restarted = "node restarted at " + new Date().toLocaleTimeString();
    const c = $("counters").dataset;
    c.restarts = String(Number(c.restarts) + 1);
  }

  function addRates(history) {
    // history: [uptime, in, out, bytes_in, bytes_out] samples; rates between neighbours
    for (const sample of history) {
      if (lastSample !== null && sample[0] > lastSample[0] &&
          sample.slice(1).some((v, i) => v < lastSample[i + 1])) restart();  // counters went down
      if (lastSample !== null && sample[0] > lastSample[0]) {
        const dt = sample[0] - lastSample[0];
        points.in.push([sample[0], (sample[1] - lastSample[1]) / dt]);
        points.out.push([sample[0], (sample[2] - lastSample[2]) / dt]);
        points.bytes.push([sample[0], (sample[3] - lastSample[3]) / dt]);
      }
      if (lastSample === null || sample[0] > lastSample[0]) lastSample = sample;
    }
    for (const key of Object.keys(points)) points[key] = points[key].slice(-MAX_POINTS);
  }

  function show(status) {
    const s = status.server;
    const who = [s.node, s.pid, s.started].join(" ");
    if (identity !== null && who !== identity) restart();
    identity = who;
    $("node").textContent = s.node.slice(0, 12);
    $("node").title = s.node;
    $("bus").textContent = "bus " + s.bus + " · berryMQ " + s.berrymq + " · pid " + s.pid;
    $("uptime").textContent = age(s.uptime_s);
    $("listening").textContent = s.listening.length ? s.listening.join(", ") : "not serving";
    const m = status.messages, b = status.bytes, lost = status.lost;
    $("messages-in").textContent = m.in;
    $("messages-out").textContent = m.out;
    $("messages-in-rate").textContent = human(m.in_per_s) + "/s";
    $("messages-out-rate").textContent = human(m.out_per_s) + "/s";
    $("bytes").textContent = human(b.in) + " / " + human(b.out);
    $("bytes-rate").textContent = human(b.in_per_s) + "/s in · " + human(b.out_per_s) + "/s out";
    $("lost").textContent = lost.total;
    $("lost").className = lost.total ? "value bad" : "value";
    $("lost-reasons").textContent = Object.entries(lost.reasons).map(([r, n]) => r + ": " + n).join(" · ") || "none";
    const refused = status.refused || { total: 0, reasons: {} };
    $("refused").textContent = refused.total;
    $("refused-reasons").textContent = Object.entries(refused.reasons).map(([r, n]) => r + ": " + n).join(" · ") || "none";
    $("duplicates").textContent = m.duplicates === undefined ? "–" : m.duplicates;
    $("peers").textContent = status.sessions.length + " / " + status.connections.length;
    const c = $("counters").dataset;
    c.messagesIn = m.in; c.messagesOut = m.out; c.bytesIn = b.in; c.bytesOut = b.out;
    c.lost = lost.total; c.refused = refused.total; c.duplicates = m.duplicates ?? "";
    c.sessions = status.sessions.length; c.connections = status.connections.length;
    c.updates = String(Number(c.updates) + 1);

    fill("sessions", status.sessions.map((x) => [{ text: x.id, cls: "" }, x.style, x.peer || "–",
      age(x.age_s), age(x.idle_s), age(x.ttl_s)]), 6, "no peer is connected");
    fill("connections", status.connections.map((x) => [x.address, x.style, age(x.age_s),
      num(x.pending), num(x.sent), num(x.lost), num(x.refused),
      { text: x.state, cls: x.state === "open" || x.state === "connected" ? "" : "bad" }]), 8,
    "this node has not connected to another");
    fill("queues", status.queues.map((x) => [x.name, x.kind, num(x.depth),
      x.bytes === null ? "–" : num(x.bytes), x.maxsize ? num(x.maxsize) : "∞"]), 5, "no queue");
    fill("recent", status.recent.slice().reverse().map((x) => [
      new Date(x.time * 1000).toLocaleTimeString(), { text: x.direction === "in" ? "→ in" : "← out", cls: x.direction },
      { text: x.identifier, cls: "identifier" }, x.peer || "–"]), 4, "no message yet");
    fill("plugins", status.plugins.map((x) => [x.name, x.version, x.active ? "yes" : "no",
      x.status.length ? x.status.join("; ") : x.reason]), 4, "no plugin");
    addRates(status.history);
    chart("chart-in", points.in, "#2563eb");
    chart("chart-out", points.out, "#db2777");
    chart("chart-bytes", points.bytes, "#059669");
  }

  function drawNetwork(d) {
    // three columns: senders -> patterns -> receivers; the bus and its peers on the right
    const box = $("network");
    box.replaceChildren();
    const patterns = [];
    for (const r of d.receivers) for (const f of r.follows) if (!patterns.includes(f.pattern)) patterns.push(f.pattern);
    const cut = (t, n) => (t.length > n ? t.slice(0, n - 1) + "…" : t);
    const BW = 170, BH = 34, GAP = 12, X = [10, 220, 430, 640];
    const peers = d.connections.map((c) => c.style + " " + c.address);
    const rows = Math.max(1, d.senders.length, patterns.length, d.receivers.length, peers.length + 1);
    const H = rows * (BH + GAP) + 30;
    box.setAttribute("viewBox", "0 0 820 " + H);
    box.setAttribute("height", H);
    const at = {};
    const node = (key, col, row, lines, fillColor, rx) => {
      const x = X[col], y = 24 + row * (BH + GAP);
      box.appendChild(svg("rect", { x, y, width: BW, height: BH, rx, fill: fillColor, stroke: "#9ca3af" }));
      lines.forEach((t, i) => box.appendChild(svg("text", { x: x + 8, y: y + 14 + i * 13 }, cut(t, 28))));
      at[key] = [x, y + BH / 2];
    };
    const edge = (a, b, label) => {
      if (!at[a] || !at[b]) return;
      const [x1, y1] = [at[a][0] + BW, at[a][1]], [x2, y2] = at[b];
      const mx = (x1 + x2) / 2;
      box.appendChild(svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge" }));
      if (label) box.appendChild(svg("text", { x: mx - 20, y: (y1 + y2) / 2 - 3, fill: "#6b7280" }, cut(label, 18)));
    };
    ["senders", "patterns", "receivers", "bus"].forEach((t, i) =>
      box.appendChild(svg("text", { x: X[i], y: 14, fill: "#6b7280" }, t)));
    d.senders.forEach((s, i) => node(s.id, 0, i, [s.kind, s.name], "#e3f4df", 2));
    patterns.forEach((p, i) => node("p:" + p, 1, i, [p], "#fff3c4", 17));
    d.receivers.forEach((r, i) => {
      const lines = [r.kind + (r.object ? " of " + r.object : ""), r.name];
      if (r.queue) lines[0] += " · " + r.queue.size + " waiting";
      node(r.id, 2, i, lines, r.kind === "queue" ? "#f6dfe9" : "#dcebfb", 6);
    });
    node("bus", 3, 0, ["bus " + d.bus, d.transports.map((t) => t.scheme).join(", ") || "no transport"], "#eeeeee", 2);
    peers.forEach((p, i) => node("c" + i, 3, i + 1, [p], "#ffffff", 2));
    const matches = (sent, pattern) => {
      const split = (t) => { const [n, a] = t.split(":"); return [n.split("@")[0], a || "*", n.split("@")[1] || ""]; };
      const [n1, a1, s1] = split(sent), [n2, a2, s2] = split(pattern);
      return s1 === s2 && (n1 === n2 || n1 === "*" || n2 === "*") && (a1 === a2 || a1 === "*" || a2 === "*");
    };
    for (const s of d.senders) for (const sent of s.sends) for (const p of patterns) if (matches(sent, p)) edge(s.id, "p:" + p, sent);
    for (const r of d.receivers) for (const f of r.follows) edge("p:" + f.pattern, r.id, f.guard ? "if " + f.guard : "");
  }

  async function get(path) {
    // a node that accepts the connection but never answers (hung, stopped) must not keep
    // the page waiting: the request is aborted after TIMEOUT_MS, body included
    const abort = new AbortController();
    const clock = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const answer = await fetch(path, { headers, cache: "no-store", signal: abort.signal });
      if (!answer.ok) throw new Error(path + ": HTTP " + answer.status + " " + (await answer.text()).trim());
      return await answer.json();
    } catch (error) {
      if (abort.signal.aborted) throw new Error(path + ": no answer in " + TIMEOUT_MS / 1000 + " s");
      throw error;
    } finally {
      clearTimeout(clock);
    }
  }

  function refresh() {
    // one refresh at a time: a call while one is under way gets that one
    if (running === null) running = poll().finally(() => { running = null; });
    return running;
  }

  async function poll() {
    try {
      const status = await get("status");
      show(status);
      if (Date.now() - lastNetwork > 5000) {
        lastNetwork = Date.now();
        drawNetwork(await get("network"));
      }
      $("state").textContent = (paused ? "paused at " : "live · ") + new Date().toLocaleTimeString() +
        (restarted ? " · " + restarted : "");
      $("state").className = "state";
    } catch (error) {
      $("state").textContent = "cannot reach the node: " + error.message;
      $("state").className = "state bad";
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused) timer = setTimeout(async () => { await refresh(); schedule(); }, 1000);
  }
  function pause(on) {
    paused = on;
    $("pause").textContent = paused ? "resume" : "pause";
    $("state").textContent = paused ? "paused" : "live";
    schedule();
  }
  $("pause").addEventListener("click", () => pause(!paused));
  // for tests and the curious: berrymqMonitor.pause(true), await berrymqMonitor.refresh()
  window.berrymqMonitor = { refresh, pause, get paused() { return paused; } };
  refresh().then(schedule);
})();
