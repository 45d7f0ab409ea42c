// Data-subject actions shared by the lead and visitor screens. "Export data" (roles with
// privacy_export) fetches the subject access document (GET /api/v1/privacy/export) and saves it
// as a JSON file; "Erase…" (roles with privacy_erase) asks the user to type the subject's email
// (a lead) or id (a visitor) in a modal dialog, then POSTs /api/v1/privacy/erase, keeps what was
// deleted for the list screen (erasedNotice) and goes back to the list. Errors show the server's
// message next to the buttons or in the dialog; a visitor that belongs to a lead (409
// visitor_is_identified) gets the message with a link to the lead, which is what must be erased.

import { get, request } from './api.js';
import { h, replace, seg } from './dom.js';
import { label, num } from './format.js';

/** Kinds of deleted records shown first; any others follow by name. */
const KIND_ORDER = ['events', 'sessions', 'profiles', 'leads'];

/** The erasure the next list screen shows: { list: 'leads' | 'visitors', text, counts }. */
let pending = null;

/** What an erasure deleted, as a list: "Events: 7", "Profiles: 2", … (kinds in data-kind). */
export function countsList(counts, { id } = {}) {
  const entries = Object.entries(counts && typeof counts === 'object' ? counts : {})
    .filter(([, n]) => Number(n) > 0)
    .sort(([a], [b]) => {
      const rank = (k) => (KIND_ORDER.includes(k) ? KIND_ORDER.indexOf(k) : KIND_ORDER.length);
      return rank(a) - rank(b) || a.localeCompare(b);
    });
  if (!entries.length) return h('span', { class: 'muted', id }, 'Nothing was held');
  return h(
    'ul',
    { class: 'erase-counts', id },
    entries.map(([kind, n]) => h('li', { dataset: { kind, count: Number(n) } }, `${label(kind)}: `, h('strong', num(Number(n))))),
  );
}

/** The notice of an erasure just made from a detail screen of `list`, once; else null. */
export function erasedNotice(list) {
  if (!pending || pending.list !== list) return null;
  const { text, counts } = pending;
  pending = null;
  return h('div', { class: 'erase-result', role: 'status', id: 'erase-result' }, h('strong', text), countsList(counts, { id: 'erase-counts' }));
}

/** A file name made of safe characters only: subject-<id>.json. */
const fileName = (id) => `subject-${String(id).replace(/[^A-Za-z0-9._-]/g, '_')}.json`;

/**
 * Offers `data` as a JSON file download. The object URL is ours (not from the data), so the
 * anchor is made directly: dom.js only lets route, path and http(s) links through.
 */
function download(data, name) {
  const url = URL.createObjectURL(new Blob([`${JSON.stringify(data, null, 2)}\n`], { type: 'application/json' }));
  const anchor = document.createElement('a');
  anchor.href = url;
  anchor.download = name;
  anchor.hidden = true;
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/**
 * The privacy buttons of one subject, or null when the role holds neither permission.
 * `subject`: { kind: 'lead' | 'visitor', id, name (shown), confirm (the text to type: a lead's
 * email, a visitor's id), confirmLabel ("email", "visitor id"), list ('leads' | 'visitors') }.
 */
export function privacyActions(ctx, subject) {
  const { site, signal } = ctx;
  const canExport = ctx.can('privacy_export');
  const canErase = ctx.can('privacy_erase');
  if (!canExport && !canErase) return null;
  const query = { site_id: site, [subject.kind === 'lead' ? 'lead_id' : 'visitor_id']: subject.id };
  const status = h('div', { class: 'form-notice', role: 'status', id: 'privacy-status' });
  const error = h('div', { class: 'form-error', role: 'alert', id: 'privacy-error' });
  const clear = () => {
    status.textContent = '';
    error.textContent = '';
  };

  let exportButton = null;
  if (canExport) {
    exportButton = h('button', { class: 'btn', type: 'button', id: 'privacy-export' }, 'Export data');
    exportButton.addEventListener('click', async () => {
      clear();
      exportButton.disabled = true;
      exportButton.textContent = 'Exporting…';
      try {
        const doc = (await get('/api/v1/privacy/export', query, signal)).data || {};
        if (signal.aborted) return;
        const name = fileName(subject.id);
        download(doc, name);
        const events = Array.isArray(doc.events) ? doc.events.length : 0;
        const devices = Array.isArray(doc.visitor_ids) ? doc.visitor_ids.length : 0;
        status.textContent = `Saved ${name}: ${num(events)} events of ${num(devices)} ${devices === 1 ? 'device' : 'devices'}${doc.events_truncated ? ' (events cut at the export limit)' : ''}.`;
      } catch (err) {
        if (!signal.aborted && err?.name !== 'AbortError') error.textContent = err?.message || String(err);
      } finally {
        exportButton.disabled = false;
        exportButton.textContent = 'Export data';
      }
    });
  }

  let eraseButton = null;
  let dialog = null;
  if (canErase) {
    eraseButton = h('button', { class: 'btn danger', type: 'button', id: 'privacy-erase', 'aria-haspopup': 'dialog' }, 'Erase…');
    const input = h('input', { id: 'erase-confirm', autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', 'aria-describedby': 'erase-error' });
    const dialogError = h('div', { class: 'form-error', role: 'alert', id: 'erase-error' });
    const submit = h('button', { class: 'btn danger solid', type: 'submit', id: 'erase-submit', disabled: true }, 'Erase permanently');
    const cancel = h('button', { class: 'btn', type: 'button', id: 'erase-cancel' }, 'Cancel');
    const what =
      subject.kind === 'lead'
        ? 'This permanently deletes the lead and everything recorded about it on all its devices: events, sessions, profiles, CRM fields, scores, alerts, chats and dead letters.'
        : 'This permanently deletes the visitor and everything recorded about it: events, sessions, its profile, chats and dead letters.';
    const form = h(
      'form',
      { class: 'erase-form', novalidate: true },
      h('h2', { id: 'erase-title' }, `Erase ${subject.name}?`),
      h('p', what),
      h('p', { class: 'muted small' }, 'It cannot be undone. The erasure is logged with your name in the site settings.'),
      h('label', { for: 'erase-confirm' }, `Type the ${subject.confirmLabel} `, h('code', subject.confirm), ' to confirm'),
      input,
      dialogError,
      h('div', { class: 'form-actions' }, cancel, submit),
    );
    dialog = h('dialog', { class: 'erase-dialog', id: 'erase-dialog', 'aria-labelledby': 'erase-title' }, form);
    let busy = false;
    const sync = () => {
      submit.disabled = busy || input.value !== subject.confirm;
    };
    input.addEventListener('input', () => {
      dialogError.textContent = '';
      sync();
    });
    cancel.addEventListener('click', () => dialog.close());
    dialog.addEventListener('cancel', (event) => {
      if (busy) event.preventDefault(); // Escape while the erase runs
    });
    dialog.addEventListener('close', () => eraseButton.focus());
    eraseButton.addEventListener('click', () => {
      clear();
      input.value = '';
      dialogError.textContent = '';
      sync();
      dialog.showModal();
      input.focus();
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (input.value !== subject.confirm || busy) return;
      busy = true;
      sync();
      cancel.disabled = true;
      submit.textContent = 'Erasing…';
      try {
        // No abort signal: once sent, the erase runs to its end on the server anyway.
        const erasure = (await request('POST', '/api/v1/privacy/erase', { body: { site_id: site, [query.lead_id ? 'lead_id' : 'visitor_id']: subject.id } })).data || {};
        if (signal.aborted) return;
        pending = { list: subject.list, text: `Erased ${subject.name}. Deleted:`, counts: erasure.counts };
        dialog.close();
        ctx.go(`#/${subject.list}`);
      } catch (err) {
        if (signal.aborted) return;
        const leadId = err?.code === 'visitor_is_identified' ? err.details?.lead_id : null;
        if (leadId) {
          // Nothing can be erased through this visitor: say why here, with the way to its lead.
          dialog.close();
          replace(error, err.message, ' ', h('a', { href: `#/leads/${seg(leadId)}`, id: 'privacy-lead-link' }, 'Open its lead'));
        } else {
          dialogError.textContent = err?.message || String(err);
        }
      } finally {
        busy = false;
        cancel.disabled = false;
        submit.textContent = 'Erase permanently';
        sync();
      }
    });
  }

  return h('div', { class: 'privacy-actions', id: 'privacy-actions' }, h('div', { class: 'privacy-buttons' }, exportButton, eraseButton), status, error, dialog);
}
