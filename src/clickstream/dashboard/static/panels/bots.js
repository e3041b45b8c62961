/* The Bot share panel: of the web events of the newest 60 s of windows, the share the collector
 * labelled a bot's (metric web.bots, by kind of reason), against the humans' (web.pageviews).
 * Drawn through dashboard.js's renderer hook. */
(function () {
  "use strict";

  var SPAN_MS = 60000;

  var sums = window.clickstreamCharts.sums;

  function total(map) {
    var n = 0;
    map.forEach(function (count) { n += count; });
    return n;
  }

  function draw(p, botWindows, windowsOf) {
    var humanWindows = windowsOf("web.pageviews");
    var newest = 0;
    [botWindows, humanWindows].forEach(function (ws) {
      if (ws.length) newest = Math.max(newest, ws[ws.length - 1][1].end);
    });
    var since = newest - SPAN_MS;
    var bots = sums(botWindows, since);
    var botCount = total(bots);
    var humanCount = total(sums(humanWindows, since));
    var all = botCount + humanCount;
    var share = all ? 100 * botCount / all : 0;
    p.el.querySelector(".big-number").textContent = all ? share.toFixed(1) + "%" : "–";
    var kinds = Array.from(bots.entries()).sort(function (a, b) { return b[1] - a[1]; });
    p.el.querySelector(".bot-kinds").textContent = kinds.length
      ? kinds.map(function (k) { return k[0] + " " + k[1].toLocaleString(); }).join(" · ")
      : "no bots in the last 60 s";
    p.el.dataset.share = all ? share.toFixed(1) : "";
    p.el.dataset.bots = String(botCount);
    p.el.dataset.humans = String(humanCount);
    return botWindows.length;
  }

  window.clickstreamPanels.register("botshare", draw);
})();
