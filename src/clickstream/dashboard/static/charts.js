/* clickstream live dashboard: the drawing of the built-in panel kinds ("lines", "big",
 * "top"), with uPlot. Loaded before dashboard.js, which keeps the data and calls
 * drawLines(panel, windows, container, height, compact), drawBig(panel, windows) and
 * drawTop(panel, windows): panel is {el, metric, plot, keys} (plot and keys are this script's,
 * kept on the panel between calls), windows is [[window_start, {end, counts: Map(key ->
 * count)}], ...] oldest first. drawTop returns the number of windows it summed.
 * Keys are user data (page paths, referrers): they are only ever written as text.
 */
(function () {
  "use strict";

  var TOP_N = 10;
  var TOP_SPAN_MS = 60000;
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

  // Each key's total over the windows that start at or after `since` (for the panels' scripts).
  function sums(windows, since) {
    var out = new Map();
    windows.forEach(function (entry) {
      if (entry[0] < since) return;
      entry[1].counts.forEach(function (count, key) { out.set(key, (out.get(key) || 0) + count); });
    });
    return out;
  }

  window.clickstreamCharts = { drawLines: drawLines, drawBig: drawBig, drawTop: drawTop, sums: sums };
})();
