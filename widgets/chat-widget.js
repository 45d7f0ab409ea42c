/*
 * chat-widget.js v1: website chat for the revenue-intelligence engine.
 *
 * Owns (browser side only): a launcher button and a chat panel in a shadow root, the
 * conversation's lifecycle (create, resume on the next page, poll, send, hand off to a person,
 * helpful / not helpful feedback) and the `crm:chat` DOM events. Reads, but never writes, the
 * ids that tracking.js stores. The contract is documented in widgets/README.md (Chat widget).
 *
 * <script async src=".../widgets/chat-widget.js" data-site="SITE_ID"
 *   [data-title="Questions? Ask us"] [data-position="left"] [data-api="https://collector.example.com"]>
 *
 * Size budget: ≤ 8192 bytes minified + gzipped (widgets/build.sh checks it).
 * Server and visitor text (messages, titles, names) only ever goes through Text nodes, never
 * innerHTML; links only take http(s) URLs.
 */
(() => {
  let d = document, w = window;
  let tag = d.currentScript || d.querySelector('script[src*="chat-widget"]');
  let { site, api, title: TITLE, position } = (tag && tag.dataset) || {};
  if (w.crmChat || !/^[\w.-]{1,64}$/.test(site || '')) return; // already running, or no valid data-site
  // The collector origin: data-api, else where this script came from. Help-centre links the
  // assistant cites are root-relative to it.
  let ORIGIN = (api || new URL(tag.src, location).origin).replace(/\/+$/, '');
  let BASE = ORIGIN + '/v1/chat/' + site + '/conversations'; // (site is URL-safe: checked above)
  let KEY = 'crm_chat:' + site, OPEN = 'crm_chat_open:' + site;

  // ---- Helpers ----------------------------------------------------------------------
  let safe = (fn) => { try { return fn(); } catch (e) {} };
  // UUID v4 from the end of a blob: URL (works on plain-http pages, unlike crypto.randomUUID).
  let uuid = (u = URL.createObjectURL(new Blob)) => (URL.revokeObjectURL(u), u.slice(-36));
  let enc = encodeURIComponent;
  // Creates an element: attrs are attributes (null/undefined: left out), then children
  // (strings become Text nodes, so server text is never parsed as markup).
  let h = (name, attrs, ...children) => {
    let el = d.createElement(name);
    for (let k in attrs) attrs[k] != null && el.setAttribute(k, attrs[k]);
    el.append(...children);
    return el;
  };
  // location.href cut to the server's 2048-byte URL limit (at a character boundary).
  let pageUrl = (b = new TextEncoder().encode(location.href), n = 2048) => {
    while ((b[n] & 192) == 128) n--;
    return new TextDecoder().decode(b.slice(0, n));
  };
  // An id as the chat API accepts it (1–64 of [A-Za-z0-9_.-]), else null.
  let valid = (v) => (v && /^[\w.-]{1,64}$/.test(v) ? v : null);
  // crm:chat on document, for host pages and tests: {type, conversation_id, …}.
  let emit = (type, more) => d.dispatchEvent(new CustomEvent('crm:chat', {
    bubbles: true, detail: { type, conversation_id: conv ? conv.id : null, ...more }
  }));

  // One request to the chat API: a POST with a string body (sent as text/plain, so a CORS
  // simple request without preflight) when body is given, else a GET. Never rejects; resolves
  // to {ok, status, data, code} (status 0: network error).
  let call = (path, body) => fetch(BASE + path, {
    method: body ? 'POST' : 'GET', body: body && JSON.stringify(body), credentials: 'omit'
  }).then((res) => res.json().catch(() => ({})).then((j) => ({
    ok: res.ok && j.data, status: res.status, data: j.data, code: (j.error || {}).code
  })), () => ({ status: 0 }));

  // ---- State --------------------------------------------------------------------------
  // conv: {id, token, title} of the current conversation, kept in localStorage[KEY] so it
  // resumes on the next page; 0 when there is none. last: the newest at_ms a poll returned.
  // seen: ids of the messages shown. pending: {text, id} of an unsent message, so a retry
  // reuses its client_id (the server dedupes by it).
  let conv = safe(() => JSON.parse(localStorage[KEY]));
  if (!(conv && conv.id && conv.token)) conv = 0;
  let status, last = 0, seen = {}, isOpen, timer, polling, backoff = 0, creating, sending, busy, pending, fb;

  let TEXT = {
    message_too_long: 'Your message is too long (2000 characters at most).',
    empty_message: 'Please type a message.',
    rate_limited: 'You are sending messages too quickly. Please wait a moment and try again.',
    conversation_closed: 'This conversation has ended. Try again to start a new one.',
    generic: 'Something went wrong. Please try again.'
  };
  TEXT.not_found = TEXT.conversation_closed;

  // ---- The panel ----------------------------------------------------------------------
  let STYLE = `
:host{all:initial}
*{box-sizing:border-box;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:inherit}
[hidden]{display:none!important}
.w{position:fixed;bottom:20px;right:20px;z-index:2147483000;color:#1f2430}
.w.left{right:auto;left:20px}
button{cursor:pointer;border-radius:8px}
:focus-visible{outline:2px solid #1d39c4;outline-offset:2px}
.l{display:block;width:56px;height:56px;border:0;border-radius:50%;background:#2f54eb;box-shadow:0 4px 14px rgba(0,0,0,.25);position:relative}
.l:before{content:"";position:absolute;left:16px;top:17px;width:24px;height:17px;border-radius:5px;background:#fff}
.l:after{content:"";position:absolute;left:20px;top:32px;border:5px solid transparent;border-top-color:#fff;border-left-color:#fff}
.l[aria-expanded=true]:before{content:"\\d7";background:none;color:#fff;font-size:30px;line-height:17px;text-align:center}
.l[aria-expanded=true]:after{display:none}
.p{position:absolute;bottom:68px;right:0;width:min(370px,calc(100vw - 40px));height:min(540px,calc(100vh - 110px));display:flex;flex-direction:column;background:#fff;border-radius:12px;box-shadow:0 10px 40px rgba(0,0,0,.25);overflow:hidden}
.left .p{right:auto;left:0}
header{display:flex;align-items:center;gap:8px;padding:12px 14px;background:#2f54eb;color:#fff}
h2{flex:1;margin:0;font-size:16px;font-weight:600}
.c{border:0;background:none;font-size:22px;line-height:1;padding:2px 8px}
.c:focus-visible{outline-color:#fff}
.g{flex:1;overflow-y:auto;padding:12px;display:flex;flex-direction:column;gap:8px;background:#f5f6fa}
.m{max-width:85%;align-self:flex-start;padding:8px 11px;border-radius:12px;background:#fff;border:1px solid #e1e4ec;overflow-wrap:anywhere}
.m.visitor{align-self:flex-end;background:#2f54eb;border-color:#2f54eb;color:#fff}
.n{display:block;font-size:12px;font-weight:600;color:#5b6275}
.b{white-space:pre-wrap}
ul{margin:6px 0 0;padding-left:18px}
a{color:#1d39c4}
.f{display:flex;flex-wrap:wrap;align-items:center;gap:6px;margin-top:8px;font-size:13px;color:#5b6275}
.f span{flex:1 0 100%}
.f button,.h{border:1px solid #b9bfcb;background:#fff;padding:3px 10px}
.t{padding:0 14px 6px;color:#5b6275;letter-spacing:2px}
.e{margin:0 10px 6px;color:#b3261e;font-size:13px}
form{display:flex;gap:8px;padding:10px 10px 6px;border-top:1px solid #e1e4ec}
textarea{flex:1;resize:none;min-width:0;max-height:120px;padding:8px 10px;border:1px solid #b9bfcb;border-radius:8px;background:#fff}
.s{border:0;background:#2f54eb;color:#fff;font-weight:600;padding:0 16px}
.h{margin:0 10px 10px;padding:6px}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}`;

  let launcher = h('button', { class: 'l', type: 'button', 'aria-label': 'Open chat', 'aria-expanded': 'false', 'aria-controls': 'p' });
  let heading = h('h2');
  let close = h('button', { class: 'c', type: 'button', 'aria-label': 'Close chat' }, '\u00d7');
  let log = h('div', { class: 'g', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages', tabindex: '0' });
  let typing = h('div', { class: 't', 'aria-hidden': 'true', hidden: '' }, '\u2022\u2022\u2022');
  let error = h('p', { class: 'e', role: 'alert', hidden: '' });
  let input = h('textarea', { id: 't', rows: '2', maxlength: '2000', placeholder: 'Type your message\u2026' });
  let form = h('form', {}, h('label', { class: 'sr', for: 't' }, 'Your message'), input,
    h('button', { class: 's', type: 'submit' }, 'Send'));
  let human = h('button', { class: 'h', type: 'button' }, 'Talk to a person');
  let panel = h('div', { class: 'p', id: 'p', role: 'dialog', hidden: '' },
    h('header', {}, heading, close), log, typing, error, form, human);
  let wrap = h('div', { class: position == 'left' ? 'w left' : 'w' }, launcher, panel);

  let setTitle = (t = TITLE || conv.title || 'Chat with us') => {
    heading.textContent = t;
    panel.setAttribute('aria-label', t);
  };

  // Shows the error line for a code ('' hides it); our wording for known codes.
  let showError = (code) => {
    error.hidden = code == '';
    error.textContent = TEXT[code] || TEXT.generic;
    error.setAttribute('data-code', code || 'generic');
  };

  // ---- Messages -----------------------------------------------------------------------
  // Shows message m once (by message_id), in at_ms order.
  let add = (m) => {
    if (!m || seen[m.message_id]) return;
    seen[m.message_id] = 1;
    let author = m.author, links = [];
    for (let a of m.articles || []) {
      let url = safe(() => new URL(a.url, ORIGIN));
      if (url && /^https?:$/.test(url.protocol)) {
        links.push(h('li', {}, h('a', { href: url.href, target: '_blank', rel: 'noopener' }, a.title || url.href)));
      }
    }
    let el = h('div', { class: 'm ' + author, 'data-author': author, 'data-message-id': m.message_id },
      h('span', { class: author == 'visitor' ? 'sr' : 'n' },
        author == 'visitor' ? 'You' : author == 'agent' ? m.agent || 'Support' : 'Assistant'),
      h('div', { class: 'b' }, m.text || ''),
      ...(links[0] ? [h('ul', {}, ...links)] : []));
    el.m = m;
    // "Did this answer your question?" under the newest answer that cites articles.
    if (author == 'assistant' && links[0] && status == 'open') {
      let yes = h('button', { type: 'button' }, 'Yes'), no = h('button', { type: 'button' }, 'No');
      if (fb) fb.remove();
      el.append(fb = h('div', { class: 'f', role: 'group', 'aria-label': 'Feedback' }, h('span', {}, 'Did this answer your question?'), yes, no));
      yes.onclick = () => vote(true);
      no.onclick = () => vote(false);
    }
    log.insertBefore(el, [...log.children].find((e) => e.m.at_ms > m.at_ms) || null);
    log.scrollTop = 1e9;
    emit('message', { message: m });
  };

  // Applies a reply's status and messages. poll: a GET, whose messages move `last` (replies
  // to a send or handoff do not: a message the poll has not fetched yet may be older).
  let apply = (x, poll) => {
    status = x.status || status;
    human.hidden = status == 'handed_off';
    if (status != 'open' && fb) fb = fb.remove(); // (undefined)
    for (let m of x.messages || []) {
      if (poll && m.at_ms > last) last = m.at_ms;
      add(m);
    }
    // The assistant asked for an email: hint the keyboard and autofill.
    let newest = log.lastElementChild, email = newest && newest.m.expects == 'email';
    input.setAttribute('inputmode', email ? 'email' : 'text');
    input.setAttribute('autocomplete', email ? 'email' : 'off');
    input.setAttribute('placeholder', email ? 'you@company.com' : 'Type your message\u2026');
  };

  // ---- Conversation ---------------------------------------------------------------------
  let path = (c) => '/' + enc(c.id);

  // Creates a conversation (once, however many callers wait); resolves to it, or 0.
  let start = () => creating || (creating = call('', {
    visitor_id: valid(safe(() => localStorage.crm_vid) || safe(() => d.cookie.match(/(?:^|;\s*)crm_vid=([^;]+)/)[1])),
    session_id: valid(safe(() => sessionStorage.crm_sid.split('|')[0])),
    url: pageUrl()
  }).then((r) => {
    creating = 0;
    if (!r.ok) return 0;
    let x = r.data;
    conv = { id: x.conversation_id, token: x.token, title: x.title };
    safe(() => (localStorage[KEY] = JSON.stringify(conv)));
    log.textContent = '';
    seen = {};
    last = 0;
    fb = 0;
    setTitle();
    apply(x);
    schedule();
    return conv;
  }));

  // The stored conversation is gone (404) or over (409): forget it; the next open, send or
  // handoff starts a new one.
  let forget = () => {
    conv = pending = 0;
    safe(() => localStorage.removeItem(KEY));
    clearTimeout(timer);
  };
  // A refused or failed request of a visitor action: the error line (the panel stays usable).
  let failed = (r) => {
    if (r.status == 404 || r.status == 409) forget();
    showError(r.code || 'generic');
  };

  // Polling: while the panel is open and the page visible, every 3 s (1.5 s once handed to a
  // person); after a network error, 429 or 5xx the delay doubles, up to 30 s.
  let schedule = () => {
    clearTimeout(timer);
    if (isOpen && conv && !d.hidden) timer = setTimeout(sync, backoff || (status == 'handed_off' ? 1500 : 3e3));
  };
  let sync = async (c = conv) => {
    clearTimeout(timer);
    if (!c || polling) return; // (the poll under way schedules the next)
    polling = 1;
    let r = await call(path(c) + '?token=' + enc(c.token) + '&after=' + last);
    polling = 0;
    if (c == conv) {
      if (r.ok) {
        backoff = 0;
        apply(r.data, 1);
      } else if (r.status == 404) forget();
      else backoff = Math.min((backoff || (status == 'handed_off' ? 1500 : 3e3)) * 2, 3e4);
    }
    schedule();
  };

  let send = async () => {
    let text = input.value.trim(), c, r = {};
    if (sending || !text) return;
    if (text.length > 2000) return showError('message_too_long'); // (a script set the value)
    sending = 1;
    showError('');
    typing.hidden = false;
    form.setAttribute('aria-busy', 'true');
    if (!pending || pending.text != text) pending = { text, id: uuid() };
    if ((c = conv || (await start()))) r = await call(path(c) + '/messages', { token: c.token, text, client_id: pending.id });
    sending = 0;
    typing.hidden = true;
    form.removeAttribute('aria-busy');
    if (r.ok) {
      pending = 0;
      if (input.value.trim() == text) input.value = ''; // (kept if edited meanwhile)
      apply(r.data);
      schedule();
    } else failed(r); // the typed text stays
  };

  let handoff = async (c, r = {}) => {
    if (busy) return;
    busy = 1;
    showError('');
    if ((c = conv || (await start()))) r = await call(path(c) + '/handoff', { token: c.token });
    busy = 0;
    if (!r.ok) return failed(r);
    apply(r.data);
    emit('handoff');
    input.focus(); // (the button that had the focus is gone)
    schedule();
  };

  let vote = async (helpful, row = fb) => {
    if (!conv) return;
    let r = await call(path(conv) + '/feedback', { token: conv.token, helpful });
    if (!r.ok) return failed(r);
    showError('');
    status = r.data.status || status;
    let more = h('button', { type: 'button' }, 'Talk to a person');
    more.onclick = () => handoff();
    row.replaceChildren(...(helpful ? ['Thanks! Glad it helped.'] : ['Sorry about that.', more]));
    if (helpful) fb = 0; // (a "No" row, with its button, goes once the chat is handed off)
    (helpful ? input : more).focus();
  };

  // ---- Opening and closing ---------------------------------------------------------------
  // auto: reopened on a new page because it was open on the last one (the focus stays put).
  let open = async (auto) => {
    if (isOpen) return;
    isOpen = 1;
    panel.hidden = false;
    launcher.setAttribute('aria-expanded', 'true');
    safe(() => (sessionStorage[OPEN] = 1));
    auto || input.focus();
    if (conv) await sync(); // resume: the whole conversation (after=0), or 404 → forget
    if (!conv && !(await start())) showError('generic');
    emit('opened');
  };
  let hide = () => {
    isOpen = 0;
    panel.hidden = true;
    launcher.setAttribute('aria-expanded', 'false');
    safe(() => sessionStorage.removeItem(OPEN));
    clearTimeout(timer);
  };

  launcher.onclick = () => (isOpen ? hide() : open());
  close.onclick = () => (hide(), launcher.focus());
  human.onclick = () => handoff();
  form.onsubmit = (e) => (e.preventDefault(), send());
  // Enter sends, Shift+Enter is a new line (not while an IME is composing).
  // (Braces: a handler property that returns false cancels the event.)
  input.onkeydown = (e) => {
    if (e.key == 'Enter' && !e.shiftKey && !e.isComposing) e.preventDefault(), send();
  };
  // Escape closes the panel and gives the focus back to the launcher.
  wrap.onkeydown = (e) => {
    if (e.key == 'Escape' && isOpen) hide(), launcher.focus();
  };
  d.addEventListener('visibilitychange', () => (d.hidden ? clearTimeout(timer) : isOpen && sync()));

  let init = () => {
    let host = h('div', { 'data-crm-chat': '' });
    host.attachShadow({ mode: 'open' }).append(h('style', {}, STYLE), wrap);
    d.body.append(host);
    setTitle();
    if (safe(() => sessionStorage[OPEN])) open(1);
  };
  // crmChat.open() / crmChat.close() for the host page (e.g. a "Chat with us" link).
  w.crmChat = { open: () => open(), close: hide };
  // An async script in <head> can run before <body> exists.
  d.body ? init() : d.addEventListener('DOMContentLoaded', init);
})();
