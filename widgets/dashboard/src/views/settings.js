// The site settings screen (#/settings, roles with sites_manage): what the site is (id, name,
// allowed origins), its privacy settings (honour DNT/GPC, per-site retention of events in days,
// datacenter traffic counted as bots) saved with the site, and, for roles with privacy_erase, the
// erasure log (GET /api/v1/privacy/erasures: when, who, what subject, what was deleted).
// Saving reads the site and PUTs it back whole (PUT replaces the settings it is sent; goals are
// left out, so they stay) with the new privacy and bot settings; a 422's field messages are
// shown next to their inputs.

import { get, request } from '../api.js';
import { h, replace, seg } from '../dom.js';
import { DASH, dateTime, num } from '../format.js';
import { countsList } from '../privacy.js';
import { badge, empty, errorBox, facts, loading, panel, table } from '../ui.js';

/** The site settings a PUT must send back unchanged (it replaces them all). */
const KEPT_SETTINGS = ['allowed_origins', 'page_rules', 'intent_half_life_days', 'icp', 'chat'];
const MAX_RETENTION_DAYS = 3650;

/** The privacy form's inputs by the field path a 422 names, and their element ids. */
const FIELDS = {
  'privacy.honor_dnt_gpc': 'privacy-dnt',
  'privacy.retention_days': 'privacy-retention',
  'bots.datacenter_asn': 'bots-datacenter',
};

/** A checkbox with its label, hint and error line. */
function checkField(id, text, hint) {
  const input = h('input', { type: 'checkbox', id, 'aria-describedby': `${id}-hint ${id}-error` });
  const error = h('div', { class: 'field-error', id: `${id}-error` });
  const el = h('div', { class: 'field check-field' }, h('label', { for: id }, input, ' ', text), h('div', { class: 'muted small', id: `${id}-hint` }, hint), error);
  return { el, input, error };
}

function privacyForm(ctx, site, onSaved) {
  const { signal } = ctx;
  const path = `/api/v1/sites/${seg(ctx.site)}`;
  const dnt = checkField(FIELDS['privacy.honor_dnt_gpc'], 'Honour Do Not Track and Global Privacy Control', 'Drops, unrecorded, the events of requests that carry DNT: 1 or Sec-GPC: 1.');
  const asn = checkField(FIELDS['bots.datacenter_asn'], 'Count traffic from datacenter networks as bots', 'By the network (ASN) of the address, when the server has an ASN database. Turn it off if your buyers browse from cloud desktops.');
  const retentionInput = h('input', { id: FIELDS['privacy.retention_days'], inputmode: 'numeric', autocomplete: 'off', placeholder: 'Keep', maxlength: 5, 'aria-describedby': 'privacy-retention-hint privacy-retention-error' });
  const retention = {
    input: retentionInput,
    error: h('div', { class: 'field-error', id: 'privacy-retention-error' }),
  };
  retention.el = h(
    'div',
    { class: 'field' },
    h('label', { for: retentionInput.id }, 'Keep events for (days)'),
    retentionInput,
    h('div', { class: 'muted small', id: 'privacy-retention-hint' }, `1 to ${num(MAX_RETENTION_DAYS)} UTC days of events, sessions and dead letters, today included. Empty: keep them as long as the store does. Profiles, leads and CRM records stay until erased.`),
    retention.error,
  );
  const fields = { 'privacy.honor_dnt_gpc': dnt, 'privacy.retention_days': retention, 'bots.datacenter_asn': asn };
  const general = h('div', { class: 'form-error', role: 'alert', id: 'privacy-form-error' });
  const notice = h('div', { class: 'form-notice', role: 'status', id: 'privacy-notice' });
  const save = h('button', { class: 'btn primary', type: 'submit', id: 'privacy-save' }, 'Save');
  const form = h('form', { class: 'growth-form', id: 'privacy-form', novalidate: true }, h('div', { class: 'form-row' }, dnt.el, asn.el), h('div', { class: 'form-row' }, retention.el), general, notice, h('div', { class: 'form-actions' }, save));

  const show = (current) => {
    dnt.input.checked = Boolean(current.privacy?.honor_dnt_gpc);
    asn.input.checked = current.bots?.datacenter_asn !== false; // on unless the site turned it off
    const days = current.privacy?.retention_days;
    retention.input.value = days === null || days === undefined ? '' : String(days);
  };
  const clear = () => {
    general.textContent = '';
    notice.textContent = '';
    for (const f of Object.values(fields)) {
      f.error.textContent = '';
      f.input.removeAttribute('aria-invalid');
    }
  };
  const mark = (name, message) => {
    fields[name].error.textContent = message;
    fields[name].input.setAttribute('aria-invalid', 'true');
  };
  retention.input.addEventListener('input', () => {
    retention.error.textContent = '';
    retention.input.removeAttribute('aria-invalid');
  });
  /** Shows a failed save: a 422's fields next to their inputs, the rest above the button. */
  const fail = (err) => {
    const problems = err?.status === 422 ? err.details?.fields : null;
    if (!problems || typeof problems !== 'object') {
      general.textContent = err?.message || String(err);
      return;
    }
    const other = [];
    let first = null;
    for (const [key, message] of Object.entries(problems)) {
      if (fields[key]) {
        mark(key, String(message));
        first ||= key;
      } else other.push(`${key}: ${message}`);
    }
    general.textContent = other.length ? other.join(' · ') : 'A setting needs a change: see the message next to it.';
    if (first) fields[first].input.focus();
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clear();
    const raw = retention.input.value.trim();
    // The range is the server's to check (its message is shown); only non-numbers stop here.
    if (raw && !/^\d+$/.test(raw)) {
      mark('privacy.retention_days', `Enter a whole number of days (1 to ${num(MAX_RETENTION_DAYS)}), or leave it empty to keep events.`);
      retention.input.focus();
      return;
    }
    save.disabled = true;
    save.textContent = 'Saving…';
    try {
      const current = (await get(path, {}, signal)).data || {};
      const body = { name: current.name };
      for (const key of KEPT_SETTINGS) if (current[key] !== undefined && current[key] !== null) body[key] = current[key];
      body.privacy = { honor_dnt_gpc: dnt.input.checked, ...(raw ? { retention_days: Number(raw) } : {}) };
      body.bots = { datacenter_asn: asn.input.checked };
      const saved = (await request('PUT', path, { body, signal })).data || body;
      if (signal.aborted) return;
      show(saved);
      notice.textContent = 'Privacy settings saved.';
      onSaved(saved);
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') fail(err);
    } finally {
      save.disabled = false;
      save.textContent = 'Save';
    }
  });
  show(site);
  return form;
}

function subjectCell(erasure) {
  const s = erasure.subject || {};
  const devices = Array.isArray(erasure.visitor_ids) ? erasure.visitor_ids.length : 0;
  const id = s.type === 'lead' ? s.lead_id : s.visitor_id;
  return [
    h('div', h('span', { class: 'badge' }, s.type === 'lead' ? 'Lead' : 'Visitor'), ' ', h('span', { class: 'subject-id', title: String(id ?? '') }, String(id ?? DASH))),
    s.type === 'lead' ? h('div', { class: 'muted small' }, `${num(devices)} ${devices === 1 ? 'device' : 'devices'}`) : null,
  ];
}

function erasureLog(erasures) {
  if (!erasures.length) return empty('No erasures yet', 'Erase a lead or a visitor from its page; every erasure is listed here.');
  // Newest first (the API lists them oldest first).
  const rows = erasures.slice().sort((a, b) => Number(b.at_ms) - Number(a.at_ms));
  return table(
    [
      {
        title: 'When',
        className: 'nowrap',
        cell: (e) => [dateTime(Number(e.at_ms)), e.completed_at_ms ? null : h('div', badge('not finished', 'warn'))],
      },
      { title: 'Who', cell: (e) => String(e.requested_by ?? DASH) },
      { title: 'Subject', cell: subjectCell },
      { title: 'Deleted', cell: (e) => countsList(e.counts) },
    ],
    rows,
    { className: 'erasure-table' },
  ).el;
}

export async function renderSettings(ctx) {
  const { el, site: siteId, signal } = ctx;
  replace(el, loading('Loading site…'));
  const site = (await get(`/api/v1/sites/${seg(siteId)}`, {}, signal)).data || {};
  if (signal.aborted) return;
  ctx.setTitle(`Site settings · ${site.name || siteId}`);
  const about = h('div');
  const showAbout = (s) => {
    const origins = Array.isArray(s.allowed_origins) ? s.allowed_origins : [];
    replace(
      about,
      facts([
        ['Site id', String(s.site_id ?? siteId)],
        ['Name', String(s.name ?? '')],
        ['Allowed origins', origins.length ? h('ul', { class: 'reasons compact' }, origins.map((o) => h('li', String(o)))) : 'Any origin'],
        ['Created', dateTime(Number(s.created_at_ms))],
      ]),
    );
  };
  showAbout(site);
  const logBody = h('div', loading('Loading erasures…'));
  const canLog = ctx.can('privacy_erase');
  replace(
    el,
    h(
      'div',
      { class: 'grid cols-2' },
      panel('Site', about, { id: 'site-about' }),
      panel('Privacy', privacyForm(ctx, site, showAbout), { id: 'site-privacy', subtitle: 'How the collector treats visitors\u2019 privacy and what it keeps.' }),
    ),
    canLog ? panel('Erasure log', logBody, { id: 'erasure-log', subtitle: 'Data-subject erasures on this site, newest first. Erase a lead or visitor from its page.' }) : null,
  );
  if (!canLog) return;
  const loadLog = async () => {
    try {
      const erasures = (await get('/api/v1/privacy/erasures', { site_id: siteId }, signal)).data;
      if (!signal.aborted) replace(logBody, erasureLog(Array.isArray(erasures) ? erasures : []));
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(logBody, errorBox(err, () => loadLog()));
    }
  };
  await loadLog();
}
