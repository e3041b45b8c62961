/* clickstream live dashboard: window counts over a WebSocket, drawn with uPlot.
 *
 * Server messages: {type: "history", part, parts, rows, server_time, history_s, status} on
 * connect, in `parts` messages (part 1 replaces everything held; the charts are drawn once the
 * last part arrived), {type: "update", rows, server_time} as results arrive, and
 * {type: "status", kafka, topic, topic_ready, error}. A row is {metric, window_start,
 * window_end, key, count, newest_event_ms?, written_ms?}; a newer row for the same (metric,
 * window_start, key) replaces the older one. Each panel shows how old its newest data is (the
 * newest event time its job counted, or when an all-time total was written), amber past the
 * history message's stale_after_s. Keys are user data (page paths, referrers): they are only ever written as text.
 * The built-in panel kinds are drawn by charts.js (loaded before this script).
 */
(function () {
  "use strict";

  var BACKOFF_MAX_MS = 10000;

  // ---- data: metric -> Map(window_start -> {end, counts: Map(key -> count)}) -----------------

  var store = new Map();
  var newest = new Map();
  var fresh = new Map();  // metric -> {event: newest event time counted, written: newest write}
  var historyMs = 300000;
  var staleAfterMs = 60000;

  function applyRows(rows) {
    var touched = new Set();
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      if (!r || typeof r.metric !== "string" || typeof r.window_start !== "number") continue;
      var top = newest.get(r.metric);
      if (top !== undefined && r.window_start <= top - historyMs) continue;
      var windows = store.get(r.metric);
      if (!windows) { windows = new Map(); store.set(r.metric, windows); }
      var w = windows.get(r.window_start);
      if (!w) { w = { end: r.window_end, counts: new Map() }; windows.set(r.window_start, w); }
      w.end = r.window_end;
      w.counts.set(String(r.key), Number(r.count) || 0);
      if (top === undefined || r.window_start > top) newest.set(r.metric, r.window_start);
      var f = fresh.get(r.metric);
      if (!f) { f = { event: null, written: null }; fresh.set(r.metric, f); }
      if (typeof r.newest_event_ms === "number" && (f.event === null || r.newest_event_ms > f.event)) f.event = r.newest_event_ms;
      if (typeof r.written_ms === "number" && (f.written === null || r.written_ms > f.written)) f.written = r.written_ms;
      touched.add(r.metric);
    }
    touched.forEach(function (metric) {
      var cutoff = newest.get(metric) - historyMs;
      var windows = store.get(metric);
      Array.from(windows.keys()).forEach(function (start) {
        if (start <= cutoff) windows.delete(start);
      });
    });
    return touched;
  }

  function sortedWindows(metric) {
    var windows = store.get(metric);
    if (!windows) return [];
    return Array.from(windows.entries()).sort(function (a, b) { return a[0] - b[0]; });
  }

  function allRows() {
    var rows = [];
    store.forEach(function (windows, metric) {
      windows.forEach(function (w, start) {
        w.counts.forEach(function (count, key) {
          rows.push({ metric: metric, window_start: start, window_end: w.end, key: key, count: count });
        });
      });
    });
    return rows;
  }

  // ---- panels (drawn by charts.js, or by their scenario's script) ----------------------------

  var charts = window.clickstreamCharts;
  var panels = Array.prototype.map.call(document.querySelectorAll(".chart[data-metric]"), function (el) {
    return { el: el, metric: el.dataset.metric, also: el.dataset.also, kind: el.dataset.kind, panel: el.closest(".panel"), plot: null, keys: "" };
  });

  function renderPanel(p) {
    var windows = sortedWindows(p.metric);
    var empty = windows.length === 0;
    p.panel.classList.toggle("is-empty", empty);
    p.panel.querySelector(".empty").hidden = !empty;
    var last = {};
    if (!empty) {
      Array.from(windows[windows.length - 1][1].counts.entries()).sort().forEach(function (entry) {
        last[entry[0]] = entry[1];
      });
    }
    var points = windows.length;
    if (p.kind === "lines") charts.drawLines(p, windows, p.el, 220, false);
    else if (p.kind === "big") charts.drawBig(p, windows);
    else if (p.kind === "top") points = charts.drawTop(p, windows);
    else if (renderers[p.kind]) points = renderers[p.kind](p, windows, sortedWindows);
    else return;  // its script has not run yet: register() draws it when it does
    p.el.dataset.points = String(points);
    p.el.dataset.last = JSON.stringify(last);
  }

  // Panels of other scenarios (static/panels/*.js, loaded after this script) draw their own
  // data-kind: register(kind, draw), where draw(panel, windows, windowsOf) returns the points
  // shown (panel.el is the chart element; windowsOf(metric) gives another metric's windows).
  // A panel's data-also names a second metric whose updates redraw it.
  var renderers = {};
  window.clickstreamPanels = {
    register: function (kind, draw) { renderers[kind] = draw; scheduleRender(null); }
  };

  var pendingAll = false;
  var pendingMetrics = new Set();
  var renderTimer = null;
  var synced = false;

  function scheduleRender(metrics) {
    if (!synced) return;
    if (metrics === null) pendingAll = true;
    else metrics.forEach(function (m) { pendingMetrics.add(m); });
    if (renderTimer === null) renderTimer = setTimeout(render, 16);
  }

  function render() {
    var all = pendingAll;
    var only = pendingMetrics;
    pendingAll = false;
    pendingMetrics = new Set();
    renderTimer = null;
    panels.forEach(function (p) {
      if (all || only.has(p.metric) || (p.also && only.has(p.also))) renderPanel(p);
    });
    renderFreshness();
  }

  // ---- each panel's freshness: how old its newest data is ------------------------------------

  panels.forEach(function (p) {
    var age = document.createElement("span");
    age.className = "age";
    age.hidden = true;
    p.panel.querySelector("h2").appendChild(age);
    p.age = age;
  });

  function describeAge(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h";
    return Math.floor(s / 86400) + " d";
  }

  function renderAges() {
    var now = Date.now() + serverOffset;
    panels.forEach(function (p) {
      var f = fresh.get(p.metric);
      var at = f ? (f.event !== null ? f.event : f.written) : null;
      if (at === null) { p.age.hidden = true; p.el.dataset.ageMs = ""; return; }
      var ms = Math.max(0, now - at);
      var stale = ms > staleAfterMs;
      p.age.hidden = false;
      p.age.textContent = (f.event !== null ? "data " : "written ") + describeAge(ms) + " ago";
      p.age.title = (f.event !== null ? "newest event counted: " : "written: ") + new Date(at).toLocaleString() +
        (f.written !== null ? "; last written " + new Date(f.written).toLocaleTimeString() : "");
      p.age.classList.toggle("stale", stale);
      p.el.dataset.ageMs = String(ms);
      p.el.dataset.stale = stale ? "1" : "0";
    });
  }
  setInterval(renderAges, 1000);

  if (typeof ResizeObserver === "function") {
    var resizer = new ResizeObserver(function () {
      panels.forEach(function (p) {
        if (!p.plot) return;
        var width = Math.max(160, p.plot.clickstreamContainer.clientWidth);
        if (width !== p.plot.width) p.plot.setSize({ width: width, height: p.plot.clickstreamHeight });
      });
    });
    panels.forEach(function (p) { resizer.observe(p.panel); });
  }

  // ---- status line ---------------------------------------------------------------------------

  var connectionText = document.getElementById("connection-text");
  var freshness = document.getElementById("freshness");
  var notice = document.getElementById("notice");
  var lastUpdateAt = null;
  var serverOffset = 0;

  function renderFreshness() {
    if (lastUpdateAt !== null) {
      var ago = Math.max(0, Math.round((Date.now() - lastUpdateAt) / 1000));
      freshness.textContent = ago < 2 ? "updated just now" : "updated " + ago + " s ago";
      return;
    }
    renderAges();
    var end = 0;
    newest.forEach(function (start, metric) {
      var w = store.get(metric).get(start);
      if (w && w.end > end) end = w.end;
    });
    freshness.textContent = end ? "newest window " + new Date(end).toLocaleTimeString() : "";
  }
  setInterval(renderFreshness, 1000);

  function showStatus(status) {
    var text = "";
    if (status.kafka === "down") {
      text = "Kafka does not answer (" + (status.error || "no answer") + "); the server keeps retrying.";
    } else if (status.kafka === "up" && !status.topic_ready) {
      text = "Waiting for the results topic " + status.topic + " (the count jobs create it).";
    }
    notice.textContent = text;
    notice.hidden = !text;
  }

  // ---- connection ----------------------------------------------------------------------------

  var socket = null;
  var state = "connecting";
  var attempt = 0;
  var retryTimer = null;
  var countdownTimer = null;
  var connects = 0;
  var messages = 0;
  var historyParts = 0;

  function setState(next, text) {
    state = next;
    document.body.dataset.connection = next;
    connectionText.textContent = text;
  }

  function socketUrl() {
    var url = new URL("ws", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  function clearTimers() {
    if (retryTimer !== null) clearTimeout(retryTimer);
    if (countdownTimer !== null) clearInterval(countdownTimer);
    retryTimer = countdownTimer = null;
  }

  function connect() {
    clearTimers();
    var ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    var opened = false;
    ws.onopen = function () { opened = true; };
    ws.onmessage = function (event) { if (socket === ws) onMessage(event.data); };
    ws.onclose = function () {
      if (socket !== ws) return;
      socket = null;
      scheduleReconnect();
      if (!opened) checkSignedIn();
    };
  }

  // A refused handshake tells scripts nothing. If the API answers 401, the token changed or
  // the cookie expired: reload, which shows the sign-in form instead of retrying forever.
  function checkSignedIn() {
    if (typeof fetch !== "function") return;
    fetch("api/status", { credentials: "same-origin", cache: "no-store" }).then(function (r) {
      if (r.status !== 401) return;
      clearTimers();
      setState("signed-out", "Signed out");
      window.location.reload();
    }, function () { /* the server is down: keep retrying */ });
  }

  function scheduleReconnect() {
    clearTimers();
    var delay = Math.min(1000 * Math.pow(2, attempt), BACKOFF_MAX_MS);
    attempt += 1;
    var at = Date.now() + delay;
    var tick = function () {
      var seconds = Math.ceil((at - Date.now()) / 1000);
      setState("reconnecting", seconds > 0 ? "Reconnecting in " + seconds + " s" : "Reconnecting…");
    };
    tick();
    countdownTimer = setInterval(tick, 250);
    retryTimer = setTimeout(function () {
      clearTimers();
      setState("reconnecting", "Reconnecting…");
      connect();
    }, delay);
  }

  function onMessage(text) {
    var msg;
    try { msg = JSON.parse(text); } catch (e) { return; }
    messages += 1;
    if (typeof msg.server_time === "number") serverOffset = msg.server_time - Date.now();
    if (msg.type === "history") {
      var part = msg.part || 1;
      var parts = msg.parts || 1;
      if (part === 1) {
        historyMs = (msg.history_s || 300) * 1000;
        staleAfterMs = (msg.stale_after_s || 60) * 1000;
        store.clear();
        newest.clear();
        fresh.clear();
        synced = false;
      }
      applyRows(msg.rows || []);
      if (part < parts) return;  // the rest of the history follows
      historyParts = parts;
      lastUpdateAt = null;
      attempt = 0;
      connects += 1;
      synced = true;
      setState("live", "Live");
      if (msg.status) showStatus(msg.status);
      scheduleRender(null);
    } else if (msg.type === "update") {
      var touched = applyRows(msg.rows || []);
      if (touched.size) lastUpdateAt = Date.now();
      scheduleRender(touched);
    } else if (msg.type === "status") {
      showStatus(msg);
    }
  }

  window.addEventListener("online", function () {
    if (socket === null) connect();
  });

  window.clickstreamDashboard = {
    get state() { return state; },
    get rows() { return allRows(); },
    get connects() { return connects; },
    get messages() { return messages; },
    get historyParts() { return historyParts; },
    get serverOffsetMs() { return serverOffset; },
    store: store,
    render: function () { scheduleRender(null); },
    reconnect: function () { if (socket) socket.close(); else connect(); }
  };

  connect();
})();
