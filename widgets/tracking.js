/*
 * tracking.js v1: website tracking tag for the revenue-intelligence engine.
 *
 * Owns (browser side only): visitor/session ids, pageviews (incl. SPA history
 * navigation), per-page engagement (scroll depth + engaged time), click
 * capture, the `window.crm` JS API, and batching/transport of events to
 * POST {endpoint}/v1/events. The wire format is in widgets/README.md.
 * Does NOT own: lead forms (separate widget) or identity resolution (server).
 *
 * <script async src=".../widgets/tracking.js" data-site="SITE_ID"
 *   [data-api="https://collector.example.com"] [data-cookieless] [data-respect-dnt]>
 */
(function () {
  'use strict';

  const w = window, d = document, nav = navigator, loc = location;
  if (w.crm && w.crm.v) return; // already running on this page

  // ---- Configuration from our own <script> tag ------------------------------
  const tag = d.currentScript || [...d.querySelectorAll('script[src*="tracking.js"]')].pop();
  const attr = (name) => tag && tag.getAttribute(name);
  const debug = (...args) => console.debug('[crm]', ...args);
  const listen = (target, type, fn, opts) => target.addEventListener(type, fn, opts);
  const SITE = attr('data-site');
  if (!/^[\w.-]{1,64}$/.test(SITE || '')) return debug('missing or invalid data-site');
  const API = (attr('data-api') || new URL(tag.src, loc.href).origin).replace(/\/+$/, '') + '/v1/events';
  const COOKIELESS = attr('data-cookieless') != null;

  const IDLE_MS = 3e4;        // user counts as engaged for 30 s after the last input
  const SESSION_MS = 18e5;    // new session after 30 min without activity
  const FLUSH_MS = 1e3;       // batching interval
  const BATCH = 20;           // events per request (keeps keepalive/beacon bodies small)
  const MAX_QUEUE = 100;      // drop oldest beyond this
  const VID = 'crm_vid', SID = 'crm_sid';
  const UTM = 'utm_source utm_medium utm_campaign utm_term utm_content gclid fbclid li_fat_id'.split(' ');

  // Do Not Track / Global Privacy Control (opt-in via data-respect-dnt): send nothing.
  if (attr('data-respect-dnt') != null && (nav.doNotTrack === '1' || nav.globalPrivacyControl === true)) {
    w.crm = function () {};
    w.crm.v = 1;
    return;
  }

  // ---- Ids & storage ----------------------------------------------------------
  function uuid() {
    const c = w.crypto;
    if (c.randomUUID) return c.randomUUID(); // secure contexts only
    // RFC 4122 v4 from random bytes: template digit 4 = version, 8 = variant.
    return '10000000-1000-4000-8000-100000000000'.replace(/[018]/g, (ch) =>
      (ch ^ (c.getRandomValues(new Uint8Array(1))[0] & (15 >> (ch / 4)))).toString(16));
  }

  // Returns the Storage object if usable (may throw when blocked), else null.
  function storage(name) {
    try {
      const s = w[name];
      s.setItem(VID + '_t', 1);
      s.removeItem(VID + '_t');
      return s;
    } catch (e) {
      return null;
    }
  }
  const ls = storage('localStorage'), ss = storage('sessionStorage');
  const mem = {}; // in-memory cache and last-resort fallback

  // Truncate to at most `max` UTF-8 bytes (the server counts bytes) without splitting a
  // character; lone surrogates become U+FFFD so the JSON stays parseable server-side.
  function cut(str, max) {
    let out = '', bytes = 0;
    for (let ch of String(str)) {
      const cp = ch.codePointAt(0);
      if (cp >= 0xd800 && cp < 0xe000) ch = '\ufffd';
      bytes += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
      if (bytes > max) break;
      out += ch;
    }
    return out;
  }
  const title = () => cut(d.title, 300);
  const href = () => cut(loc.href, 2048);
  const validId = (id) => /^[\w-]{1,64}$/.test(id || '');
  const setCookie = (value, maxAge) => {
    d.cookie = VID + '=' + value + ';path=/;max-age=' + maxAge + ';SameSite=Lax' +
      (loc.protocol === 'https:' ? ';Secure' : '');
  };

  // visitor_id: localStorage → first-party cookie (2 years) → memory.
  function visitorId() {
    let id = mem.v || (ls ? ls.getItem(VID) : (d.cookie.match(/(?:^|; )crm_vid=([^;]+)/) || [])[1]);
    if (!validId(id)) {
      id = uuid();
      if (ls) ls.setItem(VID, id);
      else setCookie(id, 63072000);
    }
    return (mem.v = id);
  }

  // session_id: "id|lastActivityMs" in sessionStorage (or memory); rotates after 30 min idle.
  function sessionId() {
    const now = Date.now();
    let [id, t] = ((ss ? ss.getItem(SID) : mem.s) || '').split('|');
    if (!validId(id) || !(now - t < SESSION_MS)) id = uuid();
    const value = id + '|' + now;
    if (ss) ss.setItem(SID, value);
    else mem.s = value;
    return id;
  }

  function clearIds() {
    mem.v = mem.s = '';
    if (ls) ls.removeItem(VID);
    if (ss) ss.removeItem(SID);
    setCookie('', 0);
  }

  // Props/traits: ≤ 50 keys, keys 1–64 bytes, values string (≤ 256 bytes) | finite number | boolean.
  function clean(obj) {
    if (!obj || typeof obj !== 'object') return;
    const out = {};
    let n = 0;
    Object.keys(obj).forEach((k) => {
      let v = obj[k];
      const t = typeof v;
      if (t === 'string') v = cut(v, 256);
      else if (t !== 'boolean' && !(t === 'number' && isFinite(v))) return;
      if (n < 50 && k && cut(k, 64) === k) out[k] = v, n++;
    });
    return n ? out : undefined;
  }

  // ---- Queue & transport ------------------------------------------------------
  let on = true;          // consent state
  let queue = [], timer = 0, busy = false, backoff = 0;

  function push(type, fields) {
    if (!on) return;
    const e = {
      v: 1, type, site_id: SITE, event_id: uuid(), ts: Date.now(),
      url: href(), title: title(),
      viewport: { w: w.innerWidth, h: w.innerHeight }, lang: nav.language
    };
    if (!COOKIELESS) {
      e.visitor_id = visitorId();
      e.session_id = sessionId();
    }
    queue.push(Object.assign(e, fields));
    if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE);
    if (queue.length >= 10 && !backoff) flush();
    else schedule(FLUSH_MS);
  }

  function schedule(ms) {
    if (!timer) timer = setTimeout(flush, ms);
  }

  // Lets the host page observe traffic (used by demo.html); detail = events array.
  const sent = (events) => w.dispatchEvent(new CustomEvent('crm:sent', { detail: events }));
  const body = (events) => JSON.stringify({ events });

  // hide === true: the page may be going away, so hand everything to sendBeacon.
  // text/plain bodies keep every request a CORS "simple request" (no preflight).
  function flush(hide) {
    clearTimeout(timer);
    timer = 0;
    while (hide === true && queue.length && nav.sendBeacon) {
      const batch = queue.slice(0, BATCH);
      if (!nav.sendBeacon(API, new Blob([body(batch)], { type: 'text/plain' }))) break;
      queue.splice(0, batch.length);
      sent(batch);
    }
    send();
  }

  // One fetch in flight at a time. Network error / 429 / 5xx → requeue at the
  // front and back off (1 s, 2 s, 4 s … 30 s). Other 4xx → drop.
  async function send() {
    if (busy || !queue.length) return;
    busy = true;
    const batch = queue.splice(0, BATCH);
    let retry = true;
    try {
      const req = fetch(API, {
        method: 'POST', body: body(batch), headers: { 'Content-Type': 'text/plain' },
        keepalive: true, credentials: 'omit'
      });
      sent(batch);
      const res = await req;
      retry = res.status === 429 || res.status >= 500;
      if (!res.ok && !retry) debug('batch dropped, HTTP', res.status);
    } catch (e) { /* offline, blocked, DNS… → retry */ }
    busy = false;
    if (retry && on) {
      queue = batch.concat(queue).slice(-MAX_QUEUE);
      backoff = Math.min(backoff * 2 || 1e3, 3e4);
    } else {
      backoff = 0;
    }
    if (queue.length) schedule(backoff || FLUSH_MS);
  }

  // ---- Pageviews & engagement -------------------------------------------------
  let curKey = '', curUrl = '', curTitle = '';  // page being measured
  let maxScroll = 0, sentScroll = 0, engaged = 0;
  let lastTick = Date.now(), lastActive = 0, lastTouch = 0, raf = 0;
  let visible = d.visibilityState === 'visible';

  const pageKey = () => loc.href.split('#')[0]; // hash-only changes are not pageviews

  // Credit time since the last tick while visible and within IDLE_MS of the last input.
  function tick() {
    const now = Date.now();
    if (visible) engaged += Math.max(0, Math.min(now, lastActive + IDLE_MS) - lastTick);
    lastTick = now;
  }

  function measureScroll() {
    raf = 0;
    const h = d.documentElement.scrollHeight;
    const pct = h ? Math.round((w.scrollY + w.innerHeight) / h * 100) : 100;
    maxScroll = Math.max(maxScroll, Math.min(100, pct));
  }
  const measureSoon = () => raf || (raf = requestAnimationFrame(measureScroll));

  function onActivity(e) {
    tick();
    lastActive = lastTick;
    if (e.type === 'scroll') measureSoon();
    // Keep the session alive while the user interacts (throttled to 10 s).
    if (on && !COOKIELESS && lastActive - lastTouch > 1e4) lastTouch = lastActive, sessionId();
  }

  // Engagement for the current page: scroll_depth is the page's max so far,
  // engaged_ms the time since the previous engagement event of this page.
  function endPage() {
    tick();
    if (curKey && (engaged > 0 || maxScroll > sentScroll)) {
      push('engagement', {
        url: curUrl,
        title: pageKey() === curKey ? title() : curTitle,
        scroll_depth: maxScroll, engaged_ms: Math.min(engaged, 864e5)
      });
      engaged = 0;
      sentScroll = maxScroll;
    }
  }

  // Pageview unless the URL (minus hash) is unchanged; force = crm('page') / bfcache restore.
  function page(force) {
    if (!on || (!force && pageKey() === curKey)) return;
    if (curKey) endPage();
    const referrer = curUrl || d.referrer; // SPA navigation: the previous page
    curKey = pageKey();
    curUrl = href();
    curTitle = title();
    engaged = maxScroll = sentScroll = 0;
    lastTick = Date.now();
    lastActive = visible ? lastTick : 0;  // arriving on a page counts as activity
    measureSoon();
    const params = new URLSearchParams(loc.search), props = {};
    UTM.forEach((k) => params.get(k) && (props[k] = params.get(k)));
    push('pageview', { referrer: referrer || undefined, props: clean(props) });
  }

  function onHide() {
    endPage();
    flush(true);
  }

  // ---- Public API -------------------------------------------------------------
  function consent(yes) {
    on = !!yes;
    if (on) return page();
    clearTimeout(timer);
    queue = [];
    timer = backoff = engaged = maxScroll = sentScroll = 0;
    curKey = curUrl = '';
    clearIds();
  }

  function api(cmd, a, b) {
    if (cmd === 'consent') return consent(a);
    if (!on) return;
    const traits = clean(a);
    if (cmd === 'page') page(true);
    else if (cmd === 'identify' && traits) push('identify', { traits });
    else if (cmd === 'track' && a) push('custom', { name: cut(a, 100), props: clean(b) });
    else debug('ignored call', cmd);
  }

  // ---- Wiring -----------------------------------------------------------------
  function init() {
    const calls = [...((w.crm && w.crm.q) || [])];
    w.crm = api;
    api.v = 1;
    visible = d.visibilityState === 'visible';

    const opts = { capture: true, passive: true };
    ['scroll', 'mousemove', 'keydown', 'click', 'touchstart'].forEach((t) => listen(w, t, onActivity, opts));
    listen(d, 'visibilitychange', () => {
      tick();
      visible = d.visibilityState === 'visible';
      if (visible) lastActive = lastTick;
      else onHide();
    });
    listen(w, 'pagehide', onHide);
    listen(w, 'pageshow', (e) => e.persisted && page(true)); // restored from back/forward cache

    // SPA navigation: wrap the History API, listen to back/forward.
    ['pushState', 'replaceState'].forEach((m) => {
      const orig = history[m];
      history[m] = function () {
        const result = orig.apply(this, arguments);
        page();
        return result;
      };
    });
    listen(w, 'popstate', () => page());

    // Delegated click capture.
    listen(d, 'click', (e) => {
      const t = e.target;
      const el = t && t.closest && t.closest('a,button,[data-crm-event]');
      if (!el) return;
      const classes = [...el.classList].slice(0, 2);
      const target = {
        text: cut((el.innerText || el.textContent || el.getAttribute('aria-label') || '').replace(/\s+/g, ' ').trim(), 100),
        selector: cut(el.tagName.toLowerCase() + (el.id ? '#' + el.id : classes.length ? '.' + classes.join('.') : ''), 200),
        outbound: false
      };
      const link = el.getAttribute('href');
      if (link != null) try {
        const u = new URL(link, loc.href);
        if (/^(https?|mailto|tel):$/.test(u.protocol)) { // skip javascript:, data: …
          target.href = cut(u.href, 2048);
          target.outbound = !/^http/.test(u.protocol) || u.host !== loc.host;
        }
      } catch (err) { /* unparsable href */ }
      push('click', { target });
      const named = t.closest('[data-crm-event]');
      const name = named && named.getAttribute('data-crm-event');
      if (name) push('custom', { name: cut(name, 100) });
    }, true);

    // Replay pre-load calls, then the first pageview (so a queued opt-out prevents it).
    calls.forEach((args) => api(...args));
    page();
  }

  // Don't count speculative prerenders; wait until the page is actually shown.
  if (d.prerendering) listen(d, 'prerenderingchange', init, { once: true });
  else init();
})();
