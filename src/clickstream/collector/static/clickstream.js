/*! clickstream tracker: pageviews, SPA routes, engaged time and custom events.
 * Served by the clickstream collector at /clickstream.js; it talks to that collector only.
 *
 *   <script async src="https://collector.example.com/clickstream.js"
 *           data-write-key="..." data-respect-dnt="true"></script>
 *
 * Keeps the original snippet's behaviour: a visitor id (UUID v4 in localStorage "Uiud"), a
 * session id in the cookie "sessionId" that expires after 30 minutes and is renewed by every
 * hit, and its referrer / landing-page rules. Plain ES2017, no dependencies, no build step.
 * See README.md beside this file for the data- attributes and the API.
 */
(() => {
  "use strict";

  if (window.clickstream && window.clickstream.visitorId) return; // included twice: keep the first

  const SESSION_MS = 30 * 60 * 1000;
  const RETRY_KEY = "clickstream.retry"; // localStorage: events whose send failed
  const RETRY_MAX = 500; // events kept there at most (the oldest are dropped)
  const RETRY_EVERY_MS = 30000;
  const REQUEST_TIMEOUT_MS = 15000;
  const MAX_BODY_BYTES = 60000; // below the browsers' 64 KB keepalive / sendBeacon budget
  const TEXT = "text/plain;charset=UTF-8"; // a "simple" content type: no CORS preflight
  const ACTIVITY = ["mousemove", "keydown", "scroll", "touchstart", "click"];

  // -- configuration: the data- attributes of our own <script> tag -----------------------------

  const script = document.currentScript ||
    Array.from(document.querySelectorAll('script[src*="clickstream.js"]')).pop();
  const data = (script && script.dataset) || {};
  const option = (name, fallback) => (data[name] ? data[name] : fallback);
  const number = (name, fallback) => {
    const value = Number(option(name, fallback));
    return Number.isFinite(value) && value >= 0 ? value : fallback;
  };

  const collector = option("collector",
    script && script.src ? new URL(script.src, location.href).origin : location.origin);
  const writeKey = option("writeKey", "");
  const heartbeatMs = number("heartbeatSeconds", 15) * 1000; // 0: no engaged-time pings
  const batchSize = Math.max(1, Math.floor(number("batchSize", 10)));
  const flushMs = number("flushMs", 1000);
  const autoPageview = option("autoPageview", "true") !== "false";
  const endpoint = collector.replace(/\/+$/, "") + "/v1/events" +
    (writeKey ? "?key=" + encodeURIComponent(writeKey) : "");

  // Do Not Track: when asked to respect it, send nothing and write no cookie or storage. The
  // API stays callable so that pages calling it do not break.
  const dnt = navigator.doNotTrack === "1" || window.doNotTrack === "1";
  if (option("respectDnt", "false") === "true" && dnt) {
    const none = () => null;
    window.clickstream = Object.freeze({
      track: none, pageview: none, flush: () => Promise.resolve(), visitorId: none, sessionId: none
    });
    return;
  }

  // -- identifiers ---------------------------------------------------------------------------

  const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

  /** A random UUID v4 (crypto.randomUUID exists only in secure contexts). */
  function uuid4() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    const h = hex(b);
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
  }

  // localStorage may be missing or throw (privacy modes, quota): then we go on without it.
  function load(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }
  function save(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* not persisted, keep going */ }
  }

  const uiud = load("Uiud") || uuid4();
  save("Uiud", uiud);

  function readCookie(name) {
    const match = document.cookie.match(new RegExp("(?:^|;\\s*)" + name + "=([^;]*)"));
    return match ? decodeURIComponent(match[1]) : "";
  }

  /** The session id (16 hex characters); each hit renews the cookie for another 30 minutes. */
  function session() {
    const id = readCookie("sessionId") || hex(crypto.getRandomValues(new Uint8Array(8)));
    const expires = new Date(Date.now() + SESSION_MS).toUTCString();
    document.cookie = `sessionId=${id};expires=${expires};path=/;SameSite=Lax`;
    return id;
  }

  // -- events --------------------------------------------------------------------------------

  /** The fields every event has. eventId stays with the event through retries. */
  const base = (eventType) => ({
    eventType, eventId: uuid4(), timestamp: Date.now(), uiud, sessionId: session(),
    pageUrl: location.href
  });

  const pageviewEvent = (lastPageVisited, landingPage, referrer) => Object.assign(
    base("Pageview"), { lastPageVisited, pageTitle: document.title, landingPage, referrer });

  /** The first pageview of a page load, with the original snippet's referrer rules. */
  function landingPageview() {
    const referrer = document.referrer;
    if (referrer === "") return pageviewEvent(referrer, 1, "direct"); // typed, bookmark...
    if (!referrer.includes(location.hostname)) return pageviewEvent(referrer, 1, referrer);
    return pageviewEvent(referrer, 0, "direct"); // internal navigation
  }

  // -- sending: batches, one request at a time, beacon on page hide, retry queue ---------------

  let queue = [];
  let timer = 0;
  let inFlight = Promise.resolve(); // the chain of requests, one at a time; never rejects
  const waiting = new Set(); // batches in that chain whose request has not started yet
  // Set on pagehide: the page then sees its keepalive requests fail ("Failed to fetch") while
  // the browser still delivers them, so those failures must not be retried (duplicates).
  let leaving = false;
  const encoder = new TextEncoder();
  const bytes = (text) => encoder.encode(text).length;

  /** Splits events into arrays whose JSON bodies stay under MAX_BODY_BYTES. */
  function batches(events) {
    const out = [];
    let current = [];
    let size = 2; // "[" and "]"
    for (const event of events) {
      const length = bytes(JSON.stringify(event)) + 1; // and a comma
      if (current.length && size + length > MAX_BODY_BYTES) {
        out.push(current);
        current = [];
        size = 2;
      }
      current.push(event);
      size += length;
    }
    if (current.length) out.push(current);
    return out;
  }

  function storedRetries() {
    let events = [];
    try { events = JSON.parse(load(RETRY_KEY) || "[]"); } catch (e) { /* corrupt: start over */ }
    return Array.isArray(events) ? events.filter((e) => e && typeof e === "object") : [];
  }

  /** Keeps events for a later try (once each, by eventId), at most RETRY_MAX, newest kept. */
  function remember(events) {
    const seen = new Set();
    const all = storedRetries().concat(events)
      .filter((e) => !seen.has(e.eventId) && seen.add(e.eventId));
    save(RETRY_KEY, JSON.stringify(all.slice(-RETRY_MAX)));
  }

  /** Takes the stored events out of the retry queue (they fall back in if they fail again). */
  function takeRetries() {
    const events = storedRetries();
    if (events.length) save(RETRY_KEY, "[]");
    return events;
  }

  /** One POST. Network errors, timeouts, 5xx and 429 go to the retry queue; other refusals
   * are logged. The answer is read to its end: until then Chromium counts the body against
   * the 64 KB keepalive budget, and the next request would fail. */
  function post(batch, body) {
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS); // no stalled chain
    return fetch(endpoint, {
      method: "POST", body, keepalive: true, mode: "cors", credentials: "omit",
      headers: { "Content-Type": TEXT }, signal: abort.signal
    }).then((response) => response.text().catch(() => "").then((text) => {
      const status = response.status;
      if (response.ok) return;
      if (status >= 500 || status === 429) remember(batch);
      else console.warn(`clickstream: ${batch.length} event(s) refused (HTTP ${status}): ${text}`);
    }), () => leaving || remember(batch)).catch(() => undefined).then(() => clearTimeout(timeout));
  }

  /** Sends the queue, one request after another. When the page is hidden or left (beacon),
   * everything not yet started goes out now with sendBeacon; what it refuses is kept for the
   * next page load. */
  function flush(beacon) {
    clearTimeout(timer);
    timer = 0;
    const fresh = batches(queue.splice(0));
    if (!beacon || !navigator.sendBeacon) {
      for (const batch of fresh) {
        waiting.add(batch);
        inFlight = inFlight.then(() => (waiting.delete(batch) ? post(batch, JSON.stringify(batch))
          : undefined));
      }
      return inFlight;
    }
    for (const batch of Array.from(waiting).concat(fresh)) {
      const blob = new Blob([JSON.stringify(batch)], { type: TEXT });
      if (!navigator.sendBeacon(endpoint, blob)) remember(batch);
    }
    waiting.clear();
    return inFlight;
  }

  function enqueue(event, now) {
    if (bytes(JSON.stringify(event)) > MAX_BODY_BYTES - 2) {
      console.warn(`clickstream: ${event.eventType} event over ${MAX_BODY_BYTES} bytes dropped`);
      return;
    }
    queue.push(event);
    if (now || queue.length >= batchSize) flush(false);
    else if (!timer) timer = setTimeout(() => flush(false), flushMs);
  }

  function retry() {
    queue = takeRetries().concat(queue);
    if (queue.length) flush(false);
  }

  // -- engaged time: a PagePing every heartbeat while visible and recently active --------------

  let lastActive = -Infinity; // the last mousemove / keydown / scroll / touchstart / click
  let countedFrom = Date.now(); // engaged time is counted from here (last ping, or shown again)
  for (const name of ACTIVITY) {
    const options = { capture: true, passive: true };
    window.addEventListener(name, () => { lastActive = Date.now(); }, options);
  }

  function heartbeat() {
    const now = Date.now();
    const engagedMs = Math.round(Math.min(now - countedFrom, heartbeatMs));
    countedFrom = now;
    if (document.visibilityState !== "visible" || now - lastActive > heartbeatMs) return;
    if (engagedMs > 0) enqueue(Object.assign(base("PagePing"), { engagedMs }), false);
  }

  // -- single-page apps: pushState / replaceState / popstate that change the URL ---------------

  let started = false;
  let currentUrl = location.href;

  /** A pageview for an in-page navigation: lastPageVisited is the previous URL. */
  function routePageview(force) {
    const previous = currentUrl;
    currentUrl = location.href;
    if (!force && (!started || currentUrl === previous)) return; // before load: the landing one
    enqueue(pageviewEvent(previous, 0, "direct"), false);
  }

  for (const name of ["pushState", "replaceState"]) {
    const original = history[name];
    history[name] = function (...args) {
      const result = original.apply(this, args);
      routePageview(false);
      return result;
    };
  }
  window.addEventListener("popstate", () => routePageview(false));

  // Leaving or hiding the page: send what is queued now, with sendBeacon.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flush(true);
    else countedFrom = Date.now(); // hidden time is not engaged time
  });
  window.addEventListener("pagehide", () => { leaving = true; flush(true); });
  window.addEventListener("pageshow", () => { leaving = false; }); // back from the bfcache

  // -- public API ----------------------------------------------------------------------------

  window.clickstream = Object.freeze({
    /** A custom event: a name and flat props (string, finite number, boolean or null values). */
    track(name, props) {
      name = name == null ? "" : String(name);
      if (!name) return console.warn("clickstream.track: a name is required");
      const clean = {};
      for (const [key, value] of Object.entries(props || {})) {
        if (value === null || ["string", "boolean"].includes(typeof value) ||
            (typeof value === "number" && Number.isFinite(value))) clean[key] = value;
        else console.warn(`clickstream.track: prop "${key}" dropped: not a flat value`);
      }
      return enqueue(Object.assign(base("Custom"), { name, props: clean }), false);
    },
    /** A pageview for the current URL, as an in-page navigation (landingPage 0). */
    pageview() { routePageview(true); },
    /** Sends what is queued; the promise resolves once every request so far has finished. */
    flush() { return flush(false); },
    visitorId() { return uiud; },
    sessionId() { return readCookie("sessionId") || null; }
  });

  function start() {
    started = true;
    currentUrl = location.href;
    if (autoPageview) queue.push(landingPageview()); // the first request carries it ...
    retry(); // ... and the failures of earlier visits
    if (heartbeatMs > 0) setInterval(heartbeat, heartbeatMs);
    setInterval(retry, RETRY_EVERY_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
