/*
 * forms-embed.js v1: embeddable lead forms for the revenue-intelligence engine.
 *
 * Owns (browser side only): fetching a form definition, rendering it in a shadow root,
 * client-side validation (a mirror of the server's rules), submission, and the
 * form_view / form_start analytics events. Reads, but never writes, the ids that
 * tracking.js stores. The contract is documented in widgets/README.md.
 *
 * Either one script tag per form:
 *   <script async src=".../widgets/forms-embed.js" data-site="SITE" data-form="FORM_ID"
 *     [data-target="#css-selector"] [data-api="https://collector.example.com"] [data-cookieless]>
 * or any number of placeholders (data-site may be left to the script tag, data-api and
 * data-cookieless may be given on either):
 *   <div data-crm-form="FORM_ID" data-site="SITE"></div>
 *
 * Size budget: ≤ 4096 bytes minified + gzipped (widgets/build.sh checks it).
 * Server strings (labels, options, messages) only ever go through textContent /
 * Text nodes, never innerHTML.
 */
(() => {
  const d = document, w = window;
  const script = d.currentScript || d.querySelector('script[src*="forms-embed"]');
  const conf = (script && script.dataset) || {};
  const API = (conf.api || new URL(script ? script.src : '/', location).origin).replace(/\/+$/, '');
  const MARK = Symbol.for('crm.form'); // set on hosts already rendered (by any copy of this script)

  // ---- Helpers ----------------------------------------------------------------------
  const safe = (fn) => { try { return fn(); } catch (e) {} };
  // UUID v4 from crypto.getRandomValues (randomUUID needs a secure context).
  const uuid = () => ([1e7] + -1e3 + -4e3 + -8e3 + -1e11).replace(/[018]/g,
    (c) => (c ^ crypto.getRandomValues(new Uint8Array(1))[0] & 15 >> c / 4).toString(16));
  // location.href cut to the server's 2048-byte URL limit (at a character boundary).
  const pageUrl = () => {
    let b = new TextEncoder().encode(location.href), n = 2048;
    while ((b[n] & 192) == 128) n--;
    return new TextDecoder().decode(b.slice(0, n));
  };
  // Creates an element: attrs are attributes (false/null/undefined: left out), then
  // children (strings become Text nodes, so server text is never parsed as markup).
  const h = (tag, attrs, ...children) => {
    const el = d.createElement(tag);
    for (const k in attrs) attrs[k] != null && attrs[k] !== false && el.setAttribute(k, attrs[k]);
    el.append(...children);
    return el;
  };
  const enc = encodeURIComponent;

  // visitor_id / session_id as stored by tracking.js: localStorage.crm_vid (or the cookie
  // crm_vid), sessionStorage.crm_sid = "id|lastActivityMs". None in cookieless mode, or
  // when the tracker stored none (it is cookieless, absent or opted out). Read on every use:
  // the tracker may create them after this script ran.
  const ids = (cookieless, out = {}) => {
    const ok = (v) => v && /^[\x21-\x7e]{1,64}$/.test(v); // what the server accepts as an id
    if (!cookieless) {
      const vid = safe(() => localStorage.crm_vid) || safe(() => d.cookie.match(/(?:^|;\s*)crm_vid=([^;]+)/)[1]);
      const sid = safe(() => sessionStorage.crm_sid.split('|')[0]);
      if (ok(vid)) out.visitor_id = vid;
      if (ok(sid)) out.session_id = sid;
    }
    return out;
  };

  // ---- Validation (mirror of the server) --------------------------------------------------
  const MESSAGES = {
    required: 'This field is required.',
    invalid_email: 'Enter a valid email address.',
    company_email_required: 'Please use your work email address.',
    too_short: 'Please enter at least {n} characters.',
    too_long: 'Please enter at most {n} characters.',
    invalid_option: 'Please choose one of the options.',
    generic: 'Something went wrong. Please try again.'
  };
  // Exactly the server's rule: non-empty local part before the first '@', a '.' in what
  // follows it, ≤ 254 UTF-8 bytes, no (Unicode White_Space) whitespace.
  const WHITESPACE = /[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;
  const emailOk = (v, at = v.indexOf('@')) =>
    at > 0 && v.slice(at + 1).includes('.') && new TextEncoder().encode(v).length <= 254 && !WHITESPACE.test(v);

  // Error code for field f with value v ('' when valid). Empty optional fields are valid.
  const check = (f, v, def) => {
    if (f.type == 'checkbox') return f.required && !v ? 'required' : '';
    if (v === '') return f.required ? 'required' : '';
    const len = [...v].length; // characters (code points), like the server
    if (f.type == 'email') {
      if (!emailOk(v)) return 'invalid_email';
      if (f.company_email && (def.free_email_domains || []).some((x) =>
        x.toLowerCase() == v.slice(v.indexOf('@') + 1).toLowerCase())) return 'company_email_required';
    }
    if (f.min_length != null && len < f.min_length) return 'too_short';
    if (f.max_length != null && len > f.max_length) return 'too_long';
    if ((f.type == 'select' || f.type == 'radio') && !(f.options || []).includes(v)) return 'invalid_option';
    return '';
  };

  // ---- One form ---------------------------------------------------------------------------
  let count = 0;

  const STYLE = `
:host{display:block}
form{display:grid;gap:14px;max-width:480px}
.crm-field{display:grid;gap:4px;margin:0;padding:0;border:0;min-width:0}
label,legend{font-weight:600;font-size:.92em;padding:0}
.crm-check label,.crm-option label{font-weight:normal}
.crm-check,.crm-option{display:flex;gap:8px;align-items:center}
input,select,textarea{font:inherit;color:inherit;padding:8px 10px;border:1px solid #b9bfcb;border-radius:6px;background:#fff;width:100%;box-sizing:border-box}
input[type=checkbox],input[type=radio]{width:auto;margin:0}
textarea{min-height:6em;resize:vertical}
[aria-invalid=true]{border-color:#c62828}
.crm-error,[data-crm-form-error]{color:#c62828;font-size:.88em}
.crm-req{color:#c62828}
button{font:inherit;font-weight:600;justify-self:start;padding:10px 18px;border:0;border-radius:6px;background:#2f54eb;color:#fff;cursor:pointer}
button:disabled{opacity:.6;cursor:default}
.crm-hp{position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden}
[hidden]{display:none!important}`;

  // Renders form formId of site into host's shadow root.
  const mount = (host, site, formId, api, cookieless) => {
    if (!site || !formId || host[MARK]) return;
    host[MARK] = 1;
    let root;
    try {
      root = host.attachShadow({ mode: 'open' });
    } catch (e) { // elements that cannot host a shadow root (<ul>, <button>…): use a child
      root = host.appendChild(h('div')).attachShadow({ mode: 'open' });
    }
    const base = api + '/v1/forms/' + enc(site) + '/' + enc(formId);
    const event = (type) => fetch(api + '/v1/events', {
      method: 'POST', keepalive: true, credentials: 'omit',
      body: JSON.stringify({
        v: 1, type, site_id: site, form_id: formId, event_id: uuid(), ts: Date.now(), url: pageUrl(),
        ...ids(cookieless)
      })
    }).catch(() => {});

    // Builds the form. fields: one entry per field that is not `known`.
    const build = (def) => {
      const n = ++count, known = def.known || [], entries = [];
      const form = h('form', { novalidate: '', 'aria-label': def.name });
      let started, busy;

      (def.fields || []).forEach((f, i) => {
        if (known.includes(f.name)) return; // progressive profiling: already given
        const id = 'crm-' + n + '-' + i, type = f.type, x = { f, id, inputs: [] };
        const label = (forId) => h(type == 'radio' ? 'legend' : 'label', { for: forId }, f.label || f.name,
          ...(f.required ? [h('span', { class: 'crm-req', 'aria-hidden': 'true' }, ' *')] : []));
        const input = (tag, attrs) => {
          const el = h(tag, { name: f.name, required: f.required && type != 'radio' && '', ...attrs });
          x.inputs.push(el);
          return el;
        };
        if (type == 'hidden') {
          form.append(input('input', { type: 'hidden', value: f.value }));
        } else if (type == 'radio') {
          x.wrap = h('fieldset', { class: 'crm-field', role: 'radiogroup', 'aria-required': f.required && 'true' }, label(),
            ...(f.options || []).map((o, j) => h('div', { class: 'crm-option' },
              input('input', { type: 'radio', id: id + '-' + j, value: o }), h('label', { for: id + '-' + j }, o))));
          x.inputs.forEach((el) => (el.checked = el.value === f.value));
        } else if (type == 'checkbox') {
          const el = input('input', { type: 'checkbox', id });
          el.checked = f.value === true || f.value === 'true';
          x.wrap = h('div', { class: 'crm-field crm-check' }, el, label(id));
        } else {
          const el = type == 'select'
            ? input('select', { id })
            : input(type == 'textarea' ? 'textarea' : 'input', {
              id, type: type == 'textarea' ? null : type == 'email' ? 'email' : 'text',
              placeholder: f.placeholder, autocomplete: type == 'email' ? 'email' : null
            });
          if (type == 'select') {
            el.append(new Option(f.placeholder || 'Select…', ''), ...(f.options || []).map((o) => new Option(o, o)));
          }
          if (f.value != null) el.value = f.value;
          x.wrap = h('div', { class: 'crm-field' }, label(id), el);
        }
        if (x.wrap) form.append(x.wrap);
        entries.push(x);
      });

      const byName = (name) => entries.find((x) => x.f.name == name);
      // Current value: boolean for checkboxes, trimmed string otherwise ('' = empty; a hidden
      // field without value: null).
      const value = (x) => {
        const [el] = x.inputs, type = x.f.type;
        if (type == 'hidden') return x.f.value == null ? null : String(x.f.value);
        if (type == 'checkbox') return el.checked;
        if (type == 'radio') return (x.inputs.find((r) => r.checked) || { value: '' }).value;
        return el.value.trim();
      };
      // show_if: shown while the controlling field (itself shown) has that value; a
      // checkbox compares as "true"/"false". A controller that is not rendered (unknown
      // name or `known`) never matches, so the field stays hidden.
      const shown = (x, depth = 0) => {
        const c = x.f.show_if, ctl = c && byName(c.field);
        return !c || (!!ctl && depth < 20 && shown(ctl, depth + 1) && String(value(ctl)) === String(c.equals));
      };
      // Shows (code) or clears ('') the error under a field. The text is ours for the codes
      // we know (same wording whether the client or the server found it), else the server's.
      const setError = (x, code, message) => {
        if (x.err) x.err.remove();
        x.err = null;
        for (const el of x.inputs) el.removeAttribute('aria-invalid'), el.removeAttribute('aria-describedby');
        if (code && x.wrap) {
          const f = x.f;
          const text = MESSAGES[code]
            ? MESSAGES[code].replace('{n}', code == 'too_short' ? f.min_length : f.max_length)
            : message || MESSAGES.generic;
          x.wrap.append(x.err = h('div', { class: 'crm-error', role: 'alert', id: x.id + '-error', 'data-error-for': f.name, 'data-code': code }, text));
          for (const el of x.inputs) el.setAttribute('aria-invalid', 'true'), el.setAttribute('aria-describedby', x.id + '-error');
        }
      };
      const validate = (x) => {
        const code = check(x.f, value(x), def);
        setError(x, code);
        return code;
      };
      // Re-evaluates show_if for every field; a hidden field loses its error.
      const refresh = () => {
        for (const x of entries) {
          x.on = shown(x);
          if (x.wrap) x.wrap.hidden = !x.on;
          if (!x.on && x.err) setError(x, '');
        }
      };
      // Form-level error (network, 429, 5xx…), above the button; '' clears it.
      let formError;
      const setFormError = (text) => {
        if (formError) formError.remove();
        formError = text ? h('div', { 'data-crm-form-error': '', role: 'alert' }, text) : null;
        if (formError) button.before(formError);
      };

      // Honeypot: humans neither see nor reach it; bots that fill every input do.
      const hp = h('input', { name: 'website', type: 'text', tabindex: '-1', autocomplete: 'off', 'aria-hidden': 'true' });
      const button = h('button', { type: 'submit' }, def.submit_label || 'Submit');
      form.append(h('div', { class: 'crm-hp', 'aria-hidden': 'true' }, hp), button);

      const entryOf = (target) => entries.find((x) => x.inputs.includes(target));
      const onInput = (e) => {
        if (e.target == hp) return;
        if (!started) started = 1, event('form_start');
        refresh();
        const x = entryOf(e.target);
        if (x && x.err) validate(x); // re-check as the visitor fixes it
      };
      form.addEventListener('input', onInput);
      form.addEventListener('change', onInput);
      // Per-field validation on blur (radios: once focus leaves the group). Not when the blur
      // comes from pressing the submit button: an error appearing there would move the button
      // before the click completes, and the submit handler validates everything anyway.
      let pressing;
      button.addEventListener('pointerdown', () => (pressing = 1));
      form.addEventListener('focusin', () => (pressing = 0));
      form.addEventListener('focusout', (e) => {
        const x = entryOf(e.target);
        if (x && x.on && !pressing && !(e.relatedTarget && x.inputs.includes(e.relatedTarget))) validate(x);
      });

      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        pressing = 0;
        if (busy) return;
        refresh();
        const invalid = entries.filter((x) => x.on && x.f.type != 'hidden' && validate(x));
        if (invalid[0]) return invalid[0].inputs[0].focus();
        const values = {};
        for (const x of entries) {
          const v = value(x);
          if (x.on && v != null && v !== '') values[x.f.name] = v; // empty optional fields: left out
        }
        busy = 1;
        button.disabled = true;
        form.setAttribute('aria-busy', 'true');
        setFormError('');
        let res, body = {};
        try {
          // A string body: text/plain, so a CORS simple request (no preflight).
          res = await fetch(base + '/submit', {
            method: 'POST', credentials: 'omit',
            body: JSON.stringify({ ...ids(cookieless), url: pageUrl(), title: d.title, values, hp: hp.value })
          });
          body = await res.json().catch(() => body);
        } catch (err) {} // network error: res stays undefined
        busy = 0;
        button.disabled = false;
        form.removeAttribute('aria-busy');
        if (res && res.ok) {
          form.replaceWith(h('div', { 'data-crm-form-success': '', role: 'status' }, def.success_message || 'Thank you!'));
          host.dispatchEvent(new CustomEvent('crm:form-submitted', {
            bubbles: true, composed: true, detail: { form_id: formId, event_id: body.event_id }
          }));
          return;
        }
        const error = (body && body.error) || {}, fields = (error.details && error.details.fields) || [];
        let other = !fields[0] || !res || res.status == 429 || res.status > 499;
        for (const fe of fields) {
          const x = byName(fe.field);
          x && x.on && x.wrap ? setError(x, fe.code, fe.message) : (other = 1);
        }
        const first = entries.find((x) => x.err);
        if (first) first.inputs[0].focus();
        // 429 / 5xx / network: retryable; other refusals show the server's message.
        if (other) setFormError(res && res.status < 500 && res.status != 429 && error.message || MESSAGES.generic);
      });

      refresh();
      root.append(h('style', {}, STYLE), form);
    };

    const vid = ids(cookieless).visitor_id;
    fetch(base + (vid ? '?visitor_id=' + enc(vid) : ''), { credentials: 'omit' })
      .then((res) => { if (!res.ok) throw res.status; return res.json(); })
      .then((def) => {
        build(def);
        event('form_view');
      })
      .catch((e) => console.warn('[crm] form ' + formId + ' not loaded:', e));
  };

  // ---- Finding hosts ------------------------------------------------------------------------
  const scriptCookieless = conf.cookieless != null;
  const render = () => {
    // Script-tag form: into data-target, else right after the script tag (in <body>).
    if (conf.form && script && !script[MARK]) {
      const target = conf.target ? safe(() => d.querySelector(conf.target)) : script.closest('body') && h('div');
      if (!target && d.readyState != 'loading') console.warn('[crm] no place to render form ' + conf.form + ' (data-target not found, or the script is not in <body>)');
      if (target) {
        script[MARK] = 1;
        if (!conf.target) script.after(target);
        mount(target, conf.site, conf.form, API, scriptCookieless);
      }
    }
    // Placeholders.
    for (const el of d.querySelectorAll('[data-crm-form]')) {
      const o = el.dataset;
      mount(el, o.site || conf.site, o.crmForm, o.api ? o.api.replace(/\/+$/, '') : API,
        scriptCookieless || o.cookieless != null);
    }
  };

  // crmForms.render(): renders placeholders added later (e.g. by a single-page app).
  w.crmForms = { render };
  render();
  // An async script can run before the rest of the page is parsed: look again once it is.
  if (d.readyState == 'loading') d.addEventListener('DOMContentLoaded', render);
})();
