/* clickstream live dashboard: window counts over a WebSocket, drawn with uPlot.
 *
 * Server messages: {type: "history", part, parts, rows, server_time, history_s, status} on
 * connect, in `parts` messages (part 1 replaces everything held; the charts are drawn once the
 * last part arrived), {type: "update", rows, server_time} as results arrive, and
 * {type: "status", kafka, topic, topic_ready, error}. A row is {metric, window_start,
 * window_end, key, count}; a newer row for the same (metric, window_start, key) replaces the
 * older one. Keys are user data (page paths, referrers): they are only ever written as text.
 */
(function () {
  "use strict";

  var TOP_N = 10;
  var TOP_SPAN_MS = 60000;
  var BACKOFF_MAX_MS = 10000;
  var KNOWN_KEYS = {
    "shop.gender": ["female", "male", "unknown"],
    "shop.action": ["click", "cart", "purchase", "favourite"],
    "web.pageviews": ["Pageview", "PagePing", "Custom"],
    "web.active_sessions": ["all"]
  };
  var COLORS = {
    female: "#f778ba", male: "#58a6ff", unknown: "#8b98a5",
    click: "#58a6ff", cart: "#e3b341", purchase: "#3fb950", favourite: "#f778ba",
    Pageview: "#58a6ff", PagePing: "#8b98a5", Custom: "#d2a8ff", all: "#3fb950"
  };
  var PALETTE = ["#79c0ff", "#ffa657", "#7ee787", "#d2a8ff", "#ff7b72", "#a5d6ff", "#e3b341"];
  var AXIS = { stroke: "#8b98a5", grid: { stroke: "#26303b", width: 1 }, ticks: { stroke: "#26303b", width: 1 } };

  // ---- data: metric -> Map(window_start -> {end, counts: Map(key -> count)}) -----------------

  var store = new Map();
  var newest = new Map();
  var historyMs = 300000;

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

  // ---- drawing -------------------------------------------------------------------------------

  var panels = Array.prototype.map.call(document.querySelectorAll(".chart[data-metric]"), function (el) {
    return { el: el, metric: el.dataset.metric, also: el.dataset.also, kind: el.dataset.kind, panel: el.closest(".panel"), plot: null, keys: "" };
  });

  function colorOf(key, index) {
    return COLORS[key] || PALETTE[index % PALETTE.length];
  }

  function seriesKeys(metric, windows) {
    var known = KNOWN_KEYS[metric] || [];
    var extra = new Set();
    windows.forEach(function (entry) {
      entry[1].counts.forEach(function (_, key) { if (known.indexOf(key) < 0) extra.add(key); });
    });
    return known.concat(Array.from(extra).sort());
  }

  function plotOptions(keys, width, height, compact) {
    return {
      width: Math.max(160, width),
      height: height,
      legend: { show: !compact },
      cursor: { drag: { x: false, y: false }, points: { size: 6 } },
      scales: {
        x: { time: true },
        y: { range: function (u, min, max) { return [0, Math.max(1, Math.ceil((max || 0) * 1.1))]; } }
      },
      axes: [
        Object.assign({ size: compact ? 28 : 36, space: 80, values: timeTicks }, AXIS),
        Object.assign({ size: compact ? 40 : 48 }, AXIS)
      ],
      series: [{ label: "Window", value: function (u, v) { return v == null ? "–" : clock(v); } }].concat(keys.map(function (key, i) {
        return { label: key, stroke: colorOf(key, i), width: 2, points: { show: false } };
      })),
      hooks: { setCursor: [showNewestInLegend] }
    };
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function timeTicks(u, splits) {
    return splits.map(function (v) { return v == null ? "" : clock(v); });
  }

  // Away from the cursor, the legend shows the newest window's counts instead of "--".
  function showNewestInLegend(u) {
    var n = u.data[0].length;
    if (n && (u.cursor.left === undefined || u.cursor.left < 0)) u.setLegend({ idx: n - 1 }, false);
  }

  function drawLines(p, windows, container, height, compact) {
    var keys = seriesKeys(p.metric, windows);
    var data = [windows.map(function (entry) { return entry[0] / 1000; })];
    keys.forEach(function (key) {
      data.push(windows.map(function (entry) { return entry[1].counts.get(key) || 0; }));
    });
    var signature = keys.join("\u0000");
    if (p.plot && p.keys === signature) {
      p.plot.setData(data);
    } else {
      if (p.plot) p.plot.destroy();
      p.plot = new uPlot(plotOptions(keys, container.clientWidth, height, compact), data, container);
      p.plot.clickstreamHeight = height;
      p.plot.clickstreamContainer = container;
      p.keys = signature;
    }
    showNewestInLegend(p.plot);
  }

  function drawBig(p, windows) {
    var last = windows.length ? windows[windows.length - 1][1] : null;
    var value = null;
    if (last) {
      value = 0;
      last.counts.forEach(function (count) { value += count; });
    }
    p.el.querySelector(".big-number").textContent = value === null ? "–" : value.toLocaleString();
    drawLines(p, windows, p.el.querySelector(".spark"), 120, true);
  }

  function drawTop(p, windows) {
    var list = p.el.querySelector(".bars");
    var newestEnd = windows.length ? windows[windows.length - 1][1].end : 0;
    // data-span="all": totals over every window (all-time totals have one window from 0).
    var span = p.el.dataset.span === "all" ? Infinity : TOP_SPAN_MS;
    var recent = windows.filter(function (entry) { return entry[0] >= newestEnd - span; });
    var sums = new Map();
    recent.forEach(function (entry) {
      entry[1].counts.forEach(function (count, key) { sums.set(key, (sums.get(key) || 0) + count); });
    });
    var top = Array.from(sums.entries())
      .sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0); })
      .slice(0, TOP_N);
    var max = top.length ? Math.max(1, top[0][1]) : 1;
    var items = top.map(function (entry) {
      var li = document.createElement("li");
      var label = document.createElement("span");
      label.className = "label";
      label.textContent = entry[0];
      label.title = entry[0];
      var value = document.createElement("span");
      value.className = "value";
      value.textContent = entry[1].toLocaleString();
      var track = document.createElement("span");
      track.className = "track";
      var fill = document.createElement("span");
      fill.className = "fill";
      fill.style.display = "block";
      fill.style.width = (100 * entry[1] / max).toFixed(1) + "%";
      track.appendChild(fill);
      li.append(label, value, track);
      return li;
    });
    list.replaceChildren.apply(list, items);
    return recent.length;
  }

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
    if (p.kind === "lines") drawLines(p, windows, p.el, 220, false);
    else if (p.kind === "big") drawBig(p, windows);
    else if (p.kind === "top") points = drawTop(p, windows);
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
        store.clear();
        newest.clear();
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
