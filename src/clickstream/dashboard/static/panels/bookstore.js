/* The Bookstore panel: top books by description opens and by purchases over the last
 * 5 minutes of 1-minute windows (metrics bookstore.opens and bookstore.purchases), each with
 * its conversion (purchases / opens). Drawn through dashboard.js's renderer hook. */
(function () {
  "use strict";

  var SPAN_MS = 5 * 60000;
  var TOP_N = 8;

  var sums = window.clickstreamCharts.sums;

  function newestEnd(windows) {
    return windows.length ? windows[windows.length - 1][1].end : 0;
  }

  function conversion(opens, purchases) {
    return opens ? (100 * purchases / opens).toFixed(1) + "%" : "–";
  }

  function row(book, value, max, detail) {
    var li = document.createElement("li");
    li.dataset.book = book;
    var label = document.createElement("span");
    label.className = "label";
    label.textContent = book;
    var number = document.createElement("span");
    number.className = "value";
    number.textContent = value.toLocaleString() + " · " + detail;
    var track = document.createElement("span");
    track.className = "track";
    var fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (100 * value / Math.max(1, max)).toFixed(1) + "%";
    track.appendChild(fill);
    li.append(label, number, track);
    return li;
  }

  function fill(list, ranked, opens, purchases, other) {
    var top = Array.from(ranked.entries())
      .sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); })
      .slice(0, TOP_N);
    var max = top.length ? top[0][1] : 1;
    list.replaceChildren.apply(list, top.map(function (entry) {
      var book = entry[0];
      var o = opens.get(book) || 0;
      var p = purchases.get(book) || 0;
      return row(book, entry[1], max, other(o, p) + " · conv " + conversion(o, p));
    }));
  }

  function draw(p, openWindows, windowsOf) {
    var el = p.el;
    var buyWindows = windowsOf("bookstore.purchases");
    var since = Math.max(newestEnd(openWindows), newestEnd(buyWindows)) - SPAN_MS;
    var opens = sums(openWindows, since);
    var purchases = sums(buyWindows, since);
    fill(el.querySelector(".by-opens"), opens, opens, purchases,
      function (o, p) { return p + " bought"; });
    fill(el.querySelector(".by-purchases"), purchases, opens, purchases,
      function (o) { return o + " opens"; });
    el.dataset.conversion = JSON.stringify(Array.from(opens.keys()).reduce(function (acc, book) {
      acc[book] = conversion(opens.get(book), purchases.get(book) || 0);
      return acc;
    }, {}));
    return openWindows.length;
  }

  if (window.clickstreamPanels) window.clickstreamPanels.register("bookstore", draw);
})();
