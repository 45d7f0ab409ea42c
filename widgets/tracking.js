/*
 * tracking.js v1: website tracking tag for the revenue-intelligence engine.
 *
 * Owns (browser side only): visitor/session ids, pageviews (incl. SPA history
 * navigation), per-page engagement (scroll depth + engaged time), click
 * capture, the `window.crm` JS API, and batching/transport of events to
 * POST {api}/v1/events. The wire format is in widgets/README.md.
 * Does NOT own: lead forms (separate widget) or identity resolution (server).
 *
 * <script async src=".../widgets/tracking.js" data-site="SITE_ID"
 *   [data-api="https://collector.example.com"] [data-cookieless] [data-respect-dnt]>
 *
 * Size budget: ≤ 2048 bytes minified + gzipped; widgets/build.sh checks it. So the
 * code is written to minify well: one DOM listener for everything, few helpers,
 * short names. Wire-format property names must never be renamed.
 */
(() => {
  const w = window, d = document, nav = navigator, loc = location, M = Math, now = Date.now;
  if (w.crm && w.crm.v) return; // already running on this page

  // ---- Helpers ------------------------------------------------------------------
  // Runs fn; undefined if it throws (blocked storage/cookies, unparsable URL…).
  const safe = (fn) => { try { return fn(); } catch (e) {} };
  // UUID v4 from crypto.getRandomValues (randomUUID needs a secure context).
  // The template is "10000000-1000-4000-8000-100000000000": 4 = version, 8 = variant.
  const uuid = () => ([1e7] + -1e3 + -4e3 + -8e3 + -1e11).replace(/[018]/g,
    (c) => (c ^ crypto.getRandomValues(new Uint8Array(1))[0] & 15 >> c / 4).toString(16));
  // Truncates to at most n UTF-8 bytes (the server counts bytes) without splitting a
  // character. TextEncoder turns lone surrogates into U+FFFD, so the JSON always parses.
  const cut = (s, n, b = new TextEncoder().encode(s)) => {
    while ((b[n] & 192) == 128) n--; // back up over continuation bytes
    return new TextDecoder().decode(b.slice(0, n));
  };

  // ---- Configuration from our own <script> tag ----------------------------------
  const tag = d.currentScript || d.querySelector('script[data-site][src*=tracking]') || d;
  const { site, api: apiAttr, cookieless, respectDnt } = tag.dataset || {};
  if (!/^[\w.-]{1,64}$/.test(site || '')) return console.debug('[crm] invalid data-site');
  const API = (apiAttr || new URL(tag.src, loc).origin).replace(/\/+$/, '') + '/v1/events';
  const COOKIELESS = cookieless != null;

  // Do Not Track / Global Privacy Control (opt-in via data-respect-dnt): send nothing.
  if (respectDnt != null && (nav.doNotTrack == 1 || nav.globalPrivacyControl)) {
    return (w.crm = () => {}).v = 1;
  }

  // ---- Ids & storage --------------------------------------------------------------
  // visitor_id: localStorage.crm_vid → first-party cookie crm_vid (2 years) → memory.
  // session_id: "id|lastActivityMs" in sessionStorage.crm_sid (or memory); a new one
  // after 30 min without activity. `mem` starts with the cookie's id; last resort.
  let mem = { crm_vid: safe(() => d.cookie.match(/(^|; )crm_vid=([^;]+)/)[2]) };
  const cookie = (value, maxAge) => safe(() => {
    d.cookie = 'crm_vid=' + value + ';path=/;max-age=' + maxAge + ';SameSite=Lax' +
      (loc.protocol == 'https:' ? ';Secure' : '');
  });
  // The id under key k of Storage s (a new UUID if missing); ttl only for the session id.
  const getId = (s, k, ttl, t = now()) => {
    let [id, last] = (safe(() => w[s][k]) || mem[k] || '').split('|');
    if (!/^[\w-]{36}$/.test(id) || (ttl && !(t - last < ttl))) id = uuid();
    mem[k] = ttl ? id + '|' + t : id;
    // Storage blocked, disabled or full: the visitor id goes in the cookie.
    safe(() => (w[s][k] = mem[k])) || ttl || cookie(id, 63072000);
    return id;
  };
  const sessionId = () => getId('sessionStorage', 'crm_sid', 18e5);

  // Props/traits: ≤ 50 keys, keys 1–64 bytes, values string (≤ 256 bytes) | finite number | boolean.
  // Returns undefined when nothing usable is left (so the field is omitted).
  const clean = (o, out, n = 0) => {
    if (o && typeof o == 'object') for (const k of Object.keys(o)) {
      const v = o[k], str = typeof v == 'string';
      if ((str || Number.isFinite(v) || v === !!v) && n < 50 && k && cut(k, 64) == k) {
        (out = out || {})[k] = str ? cut(v, 256) : v;
        n++;
      }
    }
    return out;
  };

  // ---- Queue & transport ----------------------------------------------------------
  let on = true; // consent
  let queue = [], timer = 0, busy = 0, backoff = 0;

  // Queues an event and returns it.
  const push = (type, fields, e) => {
    if (!on) return;
    queue = [...queue, e = Object.assign({
      v: 1, type, site_id: site, event_id: uuid(), ts: now(), url: cut(loc.href, 2048), title: cut(d.title, 300),
      viewport: { w: innerWidth, h: innerHeight }, lang: nav.language
    }, COOKIELESS || { visitor_id: getId('localStorage', 'crm_vid'), session_id: sessionId() }, fields)].slice(-100); // drop the oldest
    queue[9] && !backoff ? send() : schedule(1e3); // 10 queued: send now
    return e;
  };

  const schedule = (ms) => timer || (timer = setTimeout(send, ms));

  // Sends batches of 20 as {"events":[…]}. A string body goes out as text/plain (fetch
  // and sendBeacon alike), so requests are CORS "simple requests" (no preflight).
  // hide: the page may be going away, so batches go to sendBeacon; if it refuses one,
  // that one is fetched. Otherwise one fetch at a time. Each request fires `crm:sent`
  // (detail = its events) for the host page (demo.html shows them).
  // Network error / 429 / 5xx → requeue at the front and back off (1 s, 2 s … 30 s).
  // Other 4xx → drop (the server dedupes retries by event_id).
  const send = (hide) => {
    timer = clearTimeout(timer);
    while (queue[0] && (hide || !busy)) {
      const batch = queue.splice(0, 20), body = JSON.stringify({ events: batch });
      if (!(hide && nav.sendBeacon && nav.sendBeacon(API, body))) {
        hide = 0;
        busy = 1;
        const done = (res, s = res.status) => { // (no status on network errors: offline, DNS…)
          busy = 0;
          if (on && (!(s < 500) || s == 429)) {
            queue = [...batch, ...queue].slice(-100);
            backoff = M.min(backoff * 2 || 1e3, 3e4);
          } else {
            backoff = 0;
            if (s > 299) console.debug('[crm] dropped, HTTP', s);
          }
          queue[0] && schedule(backoff || 1e3);
        };
        fetch(API, { method: 'POST', body, keepalive: true, credentials: 'omit' }).then(done, done);
      }
      w.dispatchEvent(new CustomEvent('crm:sent', { detail: batch }));
    }
  };

  // ---- Pageviews & engagement -----------------------------------------------------
  // key: URL without hash of the page being measured; cur: its pageview event.
  let key, cur, maxScroll = 0, sentScroll = 0, engaged = 0, lastTick = now(), lastActive = 0, lastTouch = 0, visible;

  // Credit the time since the last tick while visible and within 30 s of the last input.
  const tick = (t = now()) => {
    if (visible) engaged += M.max(0, M.min(t, lastActive + 3e4) - lastTick);
    lastTick = t;
  };

  // Percentage of the document height that has been in view (max so far). Measured on
  // scroll (browsers fire scroll events at most once per frame) and when the page ends.
  const measure = (pct = M.min(100, M.round((scrollY + innerHeight) * 100 / d.documentElement.scrollHeight))) => {
    if (pct > maxScroll) maxScroll = pct; // (false for NaN: empty document)
  };

  // Engagement for the current page, only if something changed since the last one:
  // scroll_depth is the page's max so far, engaged_ms the time since the previous one.
  const endPage = () => {
    tick();
    measure();
    if (cur && (engaged || maxScroll > sentScroll)) {
      push('engagement', {
        url: cur.url,
        title: loc.href.split('#')[0] == key ? cut(d.title, 300) : cur.title, // same page: current title
        scroll_depth: maxScroll, engaged_ms: M.min(engaged, 864e5)
      });
      engaged = 0;
      sentScroll = maxScroll;
    }
  };

  // Pageview unless the URL (minus hash) is unchanged. crm('page') and leaving the page
  // (so a back/forward cache restore counts) reset `key` to force one.
  const page = () => {
    const k = loc.href.split('#')[0], params = new URLSearchParams(loc.search), props = {};
    if (!on || k == key) return;
    endPage(); // (ticks: lastTick is now)
    key = k;
    engaged = maxScroll = sentScroll = 0;
    lastActive = lastTick; // arriving on a page counts as activity
    for (const name of 'utm_source utm_medium utm_campaign utm_term utm_content gclid fbclid li_fat_id'.split(' ')) {
      props[name] = params.get(name) || undefined; // clean() drops the absent ones
    }
    // referrer: for SPA navigation the previous page.
    cur = push('pageview', { referrer: (cur ? cur.url : d.referrer) || undefined, props: clean(props) });
  };

  // ---- Public API -------------------------------------------------------------------
  const api = (cmd, a, b) => {
    if (cmd == 'consent') {
      if ((on = !!a)) return page(); // resume: new ids, pageview for the current page
      // Opt-out: drop unsent events, forget the page, delete the ids.
      queue = [];
      backoff = 0;
      key = cur = 0;
      mem = {};
      safe(() => delete localStorage.crm_vid);
      safe(() => delete sessionStorage.crm_sid);
      cookie('', 0);
    } else if (cmd == 'page') {
      key = 0;
      page();
    } else cmd == 'identify' && (a = clean(a)) ? push('identify', { traits: a })
      : cmd == 'track' && a && push('custom', { name: cut(a, 100), props: clean(b) });
  };

  // One capturing listener on window for everything: every event counts as activity
  // (returning to the tab and back/forward navigation included).
  const onEvent = (e) => {
    const type = e.type, t = e.target;
    const el = type == 'click' && t.closest && t.closest('a,button,[data-crm-event]');
    tick();
    if ((visible = !d.hidden)) lastActive = lastTick;
    // Keep the session alive while the user interacts (throttled to 10 s).
    if (on && !COOKIELESS && lastActive - lastTouch > 1e4) lastTouch = lastActive, sessionId();
    if (type == 'scroll') measure();
    // Click on the nearest a / button / [data-crm-event].
    if (el) {
      const link = el.getAttribute('href');
      const target = {
        text: cut((el.innerText || el.textContent || el.getAttribute('aria-label') || '').replace(/\s+/g, ' ').trim(), 100),
        selector: cut(el.localName + (el.id ? '#' + el.id : ['', ...[...el.classList].slice(0, 2)].join('.')), 200),
        outbound: false
      };
      safe(() => {
        const u = new URL(link, loc);
        // Only http(s), mailto and tel (not javascript:, data: …). mailto:/tel: have no
        // host, so they are outbound like links to another host.
        if (link != null && /^(https?|mailto|tel):$/.test(u.protocol)) {
          target.href = cut(u.href, 2048);
          target.outbound = u.host != loc.host;
        }
      });
      push('click', { target });
      // data-crm-event on the element or an ancestor: also a custom event with that name.
      api('track', (t.closest('[data-crm-event]') || el).getAttribute('data-crm-event'));
    }
    if (type == 'pagehide' || !visible) { // closing or tab hidden
      endPage();
      send(1);
    }
    // popstate: back/forward; pageshow: counts only when restored from the back/forward cache.
    if (e.persisted) key = 0;
    if (type == 'popstate' || type == 'pageshow') page();
  };

  // ---- Wiring -------------------------------------------------------------------------
  const init = () => {
    const calls = (w.crm && w.crm.q) || [];
    (w.crm = api).v = 1;
    visible = !d.hidden;
    for (const type of 'scroll mousemove keydown click touchstart visibilitychange pagehide pageshow popstate'.split(' ')) {
      addEventListener(type, onEvent, true); // (window-level touchstart is passive by default)
    }
    // SPA navigation: wrap the History API.
    for (const m of ['pushState', 'replaceState']) {
      const orig = history[m];
      history[m] = (...args) => {
        orig.apply(history, args);
        page();
      };
    }
    // Replay pre-load calls, then the first pageview (so a queued opt-out prevents it).
    for (const args of calls) api(...args);
    page();
  };

  // Don't count speculative prerenders; wait until the page is actually shown.
  d.prerendering ? d.addEventListener('prerenderingchange', init) /* fires once */ : init();
})();
