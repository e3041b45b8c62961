/* Top songs (the songs scenario): one bar chart per artist of the newest window of the panel's
 * metric (songs.minute, songs.hour, songs.all), keys "artist/song". Drawn by the dashboard's
 * renderer hook, so it updates with every pushed count. */
(function () {
  "use strict";

  var TOP_N = 10;

  function bar(song, count, max) {
    var li = document.createElement("li");
    var label = document.createElement("span");
    label.className = "label";
    label.textContent = song;
    label.title = song;
    var value = document.createElement("span");
    value.className = "value";
    value.textContent = count.toLocaleString();
    var track = document.createElement("span");
    track.className = "track";
    var fill = document.createElement("span");
    fill.className = "fill";
    fill.style.display = "block";
    fill.style.width = (100 * count / max).toFixed(1) + "%";
    track.appendChild(fill);
    li.append(label, value, track);
    return li;
  }

  function draw(p, windows) {
    if (!windows.length) { p.el.replaceChildren(); return 0; }
    var artists = new Map();
    windows[windows.length - 1][1].counts.forEach(function (count, key) {
      var cut = key.indexOf("/");
      var artist = cut < 0 ? key : key.slice(0, cut);
      var songs = artists.get(artist) || [];
      songs.push([cut < 0 ? "" : key.slice(cut + 1), count]);
      artists.set(artist, songs);
    });
    var groups = Array.from(artists.keys()).sort().map(function (artist) {
      var songs = artists.get(artist)
        .sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); })
        .slice(0, TOP_N);
      var max = Math.max(1, songs[0][1]);
      var group = document.createElement("div");
      group.className = "artist";
      group.dataset.artist = artist;
      var title = document.createElement("h3");
      title.textContent = artist;
      var list = document.createElement("ol");
      list.className = "bars";
      list.replaceChildren.apply(list, songs.map(function (s) { return bar(s[0], s[1], max); }));
      group.append(title, list);
      return group;
    });
    p.el.replaceChildren.apply(p.el, groups);
    return windows.length;
  }

  if (window.clickstreamPanels) window.clickstreamPanels.register("songs", draw);
})();
