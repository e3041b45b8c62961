/*! clickstream tracker: pageviews, SPA routes, engaged time and custom events.
 * Served by the clickstream collector at /clickstream.js; talks to nobody else.
 *
 *   <script async src="https://collector.example.com/clickstream.js"
 *           data-write-key="..." data-respect-dnt="true"></script>
 *
 * Keeps the behaviour of the original snippet: a visitor id (UUID v4 in localStorage "Uiud"),
 * a session id in the cookie "sessionId" that expires after 30 minutes of inactivity and is
 * renewed on every hit, and the referrer / landing-page rules. See README.md beside this file.
 */
(function () {
  "use strict";

  var SESSION_MINUTES = 30;
  var RETRY_KEY = "clickstream.retry";
  var RETRY_MAX = 500;
  var RETRY_EVERY_MS = 30000;
  var MAX_BODY = 60000;

  var script = document.currentScript ||
    (function () {
      var all = document.querySelectorAll('script[src*="clickstream.js"]');
      return all[all.length - 1];
    })();
  var data = (script && script.dataset) || {};

  function option(name, fallback) {
    var value = data[name];
    return value === undefined || value === "" ? fallback : value;
  }

  var collector = option("collector", script ? new URL(script.src, location.href).origin : "");
  var writeKey = option("writeKey", "");
  var heartbeatSeconds = Number(option("heartbeatSeconds", "15"));
  var batchSize = Math.max(1, Number(option("batchSize", "10")));
  var flushMs = Math.max(0, Number(option("flushMs", "1000")));
  var autoPageview = option("autoPageview", "true") !== "false";
  var endpoint = collector.replace(/\/$/, "") + "/v1/events" +
    (writeKey ? "?key=" + encodeURIComponent(writeKey) : "");

  var doNotTrack = navigator.doNotTrack === "1" || window.doNotTrack === "1";
  if (option("respectDnt", "false") === "true" && doNotTrack) {
    // Respect Do Not Track: no request, no cookie, no storage. The API stays callable.
    var noop = function () { return Promise.resolve(); };
    window.clickstream = {
      track: noop, pageview: noop, flush: noop,
      visitorId: function () { return null; }, sessionId: function () { return null; }
    };
    return;
  }

  // -- identifiers -------------------------------------------------------------------------

  function uuid4() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); });
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }

  function randomHex(bytes) {
    return Array.prototype.map.call(crypto.getRandomValues(new Uint8Array(bytes)), function (x) {
      return (x + 256).toString(16).slice(1);
    }).join("");
  }

  function storageGet(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }

  function storageSet(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* private mode: keep going */ }
  }

  var uiud = storageGet("Uiud");
  if (!uiud) {
    uiud = uuid4();
    storageSet("Uiud", uiud);
  }

  function getCookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i].replace(/^\s+/, "");
      if (part.indexOf(name + "=") === 0) return decodeURIComponent(part.slice(name.length + 1));
    }
    return "";
  }

  /** The session id; every hit renews the cookie for another 30 minutes. */
  function session() {
    var id = getCookie("sessionId") || randomHex(8);
    var expires = new Date(Date.now() + SESSION_MINUTES * 60 * 1000).toUTCString();
    document.cookie = "sessionId=" + encodeURIComponent(id) + ";expires=" + expires +
      ";path=/;SameSite=Lax";
    return id;
  }

  // -- events ------------------------------------------------------------------------------

  function base(eventType) {
    return {
      eventType: eventType,
      eventId: uuid4(),
      timestamp: Date.now(),
      uiud: uiud,
      sessionId: session(),
      pageUrl: location.href
    };
  }

  var currentUrl = location.href;

  /** The first pageview of a page load: the original snippet's referrer rules. */
  function landingPageview() {
    var event = base("Pageview");
    var referrer = document.referrer;
    event.lastPageVisited = referrer;
    event.pageTitle = document.title;
    if (referrer === "") {
      event.referrer = "direct";
      event.landingPage = 1;
    } else if (referrer.indexOf(location.hostname) === -1) {
      event.referrer = referrer;
      event.landingPage = 1;
    } else {
      event.referrer = "direct";
      event.landingPage = 0;
    }
    return event;
  }

  /** A route change inside the page (SPA) or an explicit pageview(): internal navigation. */
  function routePageview(previous) {
    var event = base("Pageview");
    event.lastPageVisited = previous;
    event.pageTitle = document.title;
    event.referrer = "direct";
    event.landingPage = 0;
    return event;
  }

  // -- sending: batching, keepalive, beacon on page hide, bounded retry queue ----------------

  var queue = [];
  var timer = null;
  var inFlight = Promise.resolve();

  function chunks(events) {
    var out = [];
    var current = [];
    var size = 2;
    events.forEach(function (event) {
      var length = JSON.stringify(event).length + 1;
      if (current.length && size + length > MAX_BODY) {
        out.push(current);
        current = [];
        size = 2;
      }
      current.push(event);
      size += length;
    });
    if (current.length) out.push(current);
    return out;
  }

  function remember(events) {
    var stored = [];
    try { stored = JSON.parse(storageGet(RETRY_KEY) || "[]"); } catch (e) { stored = []; }
    stored = stored.concat(events);
    if (stored.length > RETRY_MAX) stored = stored.slice(stored.length - RETRY_MAX);
    storageSet(RETRY_KEY, JSON.stringify(stored));
  }

  function takeRetries() {
    var stored = [];
    try { stored = JSON.parse(storageGet(RETRY_KEY) || "[]"); } catch (e) { stored = []; }
    if (stored.length) storageSet(RETRY_KEY, "[]");
    return stored;
  }

  function post(events) {
    return fetch(endpoint, {
      method: "POST",
      body: JSON.stringify(events),
      keepalive: true,
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "text/plain;charset=UTF-8" }
    }).then(function (response) {
      if (response.status >= 500 || response.status === 429) {
        remember(events);
      } else if (!response.ok) {
        return response.text().then(function (text) {
          console.warn("clickstream: events refused (" + response.status + "): " + text);
        });
      }
    }, function () {
      remember(events);
    });
  }

  function flush(useBeacon) {
    if (timer) {
      clearTimeout(timer);
      timer = null;
    }
    var events = queue.splice(0, queue.length);
    if (!events.length) return inFlight;
    var sends = chunks(events).map(function (batch) {
      if (useBeacon && navigator.sendBeacon) {
        var blob = new Blob([JSON.stringify(batch)], { type: "text/plain;charset=UTF-8" });
        if (navigator.sendBeacon(endpoint, blob)) return Promise.resolve();
      }
      return post(batch);
    });
    inFlight = Promise.all(sends).then(function () {});
    return inFlight;
  }

  function enqueue(event, immediately) {
    queue.push(event);
    if (immediately || queue.length >= batchSize) {
      flush(false);
    } else if (!timer) {
      timer = setTimeout(function () { flush(false); }, flushMs);
    }
  }

  function retry() {
    var events = takeRetries();
    if (events.length) {
      queue = queue.concat(events);
      flush(false);
    }
  }

  // -- engaged time ------------------------------------------------------------------------

  var lastActive = Date.now();
  var lastPing = Date.now();
  ["mousemove", "keydown", "scroll", "touchstart", "click"].forEach(function (name) {
    window.addEventListener(name, function () { lastActive = Date.now(); },
      { passive: true, capture: true });
  });

  function heartbeat() {
    var now = Date.now();
    var interval = heartbeatSeconds * 1000;
    var engaged = now - lastPing;
    lastPing = now;
    if (document.visibilityState !== "visible" || now - lastActive > interval) return;
    engaged = Math.min(Math.round(engaged), interval);
    if (engaged <= 0) return;
    var event = base("PagePing");
    event.engagedMs = engaged;
    enqueue(event, false);
  }

  // -- single-page apps --------------------------------------------------------------------

  function routeChanged() {
    if (location.href === currentUrl) return;
    var previous = currentUrl;
    currentUrl = location.href;
    enqueue(routePageview(previous), false);
  }

  ["pushState", "replaceState"].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      routeChanged();
      return result;
    };
  });
  window.addEventListener("popstate", routeChanged);

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") flush(true);
  });
  window.addEventListener("pagehide", function () { flush(true); });

  // -- public API --------------------------------------------------------------------------

  window.clickstream = {
    /** A custom event: a name and flat properties (strings, numbers, booleans, null). */
    track: function (name, props) {
      var event = base("Custom");
      event.name = String(name);
      event.props = props || {};
      enqueue(event, false);
    },
    /** A pageview for the current URL (internal navigation rules). */
    pageview: function () {
      var previous = currentUrl;
      currentUrl = location.href;
      enqueue(routePageview(previous), false);
    },
    /** Send what is queued; the promise settles when the request did. */
    flush: function () { return flush(false); },
    visitorId: function () { return uiud; },
    sessionId: function () { return getCookie("sessionId") || null; }
  };

  function start() {
    retry();
    if (autoPageview) enqueue(landingPageview(), true);
    if (heartbeatSeconds > 0) setInterval(heartbeat, heartbeatSeconds * 1000);
    setInterval(retry, RETRY_EVERY_MS);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
