// Shared building blocks of the screens: panels, KPI tiles, badges, chips, score bars, tables
// with keyboard-reachable rows, loading/empty/error states and the "load more" pager.

import { h, replace } from './dom.js';
import { DASH } from './format.js';

/** A titled card. `actions` go to the right of the title. */
export function panel(title, body, { actions, className = '', id, subtitle } = {}) {
  return h(
    'section',
    { class: `panel ${className}`.trim(), id, 'aria-label': title || undefined },
    title || actions ? h('header', { class: 'panel-head' }, h('div', h('h2', title), subtitle ? h('p', { class: 'muted small' }, subtitle) : null), actions ? h('div', { class: 'panel-actions' }, actions) : null) : null,
    h('div', { class: 'panel-body' }, body),
  );
}

/**
 * A KPI tile. `value` is already formatted; `note` is a tooltip (e.g. why a figure is missing);
 * `delta` = { text, good: true|false|null }.
 */
export function kpi(key, title, value, { note, delta, sub } = {}) {
  return h(
    'div',
    { class: 'kpi', dataset: { kpi: key }, title: note || undefined },
    h('div', { class: 'kpi-title' }, title),
    h('div', { class: `kpi-value${value === DASH ? ' is-missing' : ''}` }, value),
    delta ? h('div', { class: `kpi-delta ${delta.good === true ? 'up' : delta.good === false ? 'down' : ''}` }, delta.text) : null,
    sub ? h('div', { class: 'kpi-sub muted' }, sub) : null,
  );
}

export function loading(text = 'Loading…') {
  return h('div', { class: 'state loading', role: 'status' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

export function empty(title, hint) {
  return h('div', { class: 'state empty' }, h('strong', title), hint ? h('p', { class: 'muted' }, hint) : null);
}

export function errorBox(err, retry) {
  const message = err?.message || String(err);
  return h(
    'div',
    { class: 'state error', role: 'alert' },
    h('strong', 'Could not load this'),
    h('p', message),
    retry ? h('button', { class: 'btn small', type: 'button', onclick: retry }, 'Retry') : null,
  );
}

const RISK_LABELS = { healthy: 'Healthy', at_risk: 'At risk', critical: 'Critical' };

export function riskBadge(risk) {
  return h('span', { class: `badge risk-${String(risk).replace(/[^a-z_]/g, '')}` }, RISK_LABELS[risk] || risk || DASH);
}

export function badge(text, tone = '') {
  return h('span', { class: `badge ${tone}`.trim() }, text);
}

export function chip(text, title) {
  return h('span', { class: 'chip', title }, text);
}

/**
 * A 0..100 score as a number with a small bar. scale 'heat' (intent, engagement, lead score:
 * hotter is darker) or 'health' (red, amber, green).
 */
export function scoreBar(score, { max = 100, scale = 'heat' } = {}) {
  if (score === null || score === undefined || !Number.isFinite(Number(score))) return h('span', { class: 'muted' }, DASH);
  const value = Number(score);
  const ratio = Math.max(0, Math.min(1, value / max));
  const tone = ratio >= 0.7 ? 'hi' : ratio >= 0.4 ? 'mid' : 'lo';
  return h(
    'span',
    { class: `score ${scale === 'health' ? 'score' : 'heat'}-${tone}` },
    h('span', { class: 'score-num' }, Math.round(value)),
    h('span', { class: 'score-track', 'aria-hidden': 'true' }, h('span', { class: 'score-fill', style: { width: `${(ratio * 100).toFixed(1)}%` } })),
  );
}

/**
 * A table. `columns`: [{ title, cell(row) → node|string, className }]; `onRow(row)` makes rows
 * clickable (and reachable with Tab + Enter). Returns { el, add(rows) } so pages can append.
 */
export function table(columns, rows, { onRow, rowLabel, className = '' } = {}) {
  const body = h('tbody');
  const add = (more) => {
    for (const row of more) {
      const tr = h(
        'tr',
        onRow ? { class: 'clickable', tabindex: '0', 'aria-label': rowLabel ? rowLabel(row) : undefined } : {},
        columns.map((col) => h('td', { class: col.className }, col.cell(row))),
      );
      if (onRow) {
        tr.addEventListener('click', (event) => {
          if (event.target.closest('a, button')) return;
          onRow(row);
        });
        tr.addEventListener('keydown', (event) => {
          if (event.key === 'Enter') onRow(row);
        });
      }
      body.append(tr);
    }
  };
  add(rows);
  const el = h(
    'div',
    { class: `table-wrap ${className}`.trim() },
    h('table', { class: 'data' }, h('thead', h('tr', columns.map((col) => h('th', { class: col.className, scope: 'col' }, col.title)))), body),
  );
  return { el, add };
}

/**
 * Cursor pagination: `fetchPage(cursor)` resolves to { data, meta }; `render(items, first)` shows
 * a page. Adds a "Load more" button while meta.next_cursor is set.
 */
export async function paged(container, fetchPage, render, { signal } = {}) {
  const more = h('div', { class: 'pager' });
  let cursor = null;
  const load = async (first) => {
    const button = more.querySelector('button');
    if (button) {
      button.disabled = true;
      button.textContent = 'Loading…';
    }
    try {
      const page = await fetchPage(cursor);
      if (signal?.aborted) return;
      render(page.data || [], first);
      cursor = page.meta?.next_cursor || null;
      replace(more, cursor ? h('button', { class: 'btn', type: 'button', onclick: () => load(false) }, 'Load more') : null);
    } catch (err) {
      if (signal?.aborted || err?.name === 'AbortError') return;
      if (first) throw err;
      replace(more, h('span', { class: 'error-text' }, err.message), h('button', { class: 'btn small', type: 'button', onclick: () => load(false) }, 'Retry'));
    }
  };
  await load(true);
  container.append(more);
}

/**
 * A 400 that names its query parameter (`details.parameter`): { parameter, message }, the message
 * without the server's "invalid parameter <name>: " prefix (the form says which field instead).
 * Null for any other error.
 */
export function parameterProblem(err) {
  const parameter = err?.status === 400 && typeof err.details?.parameter === 'string' ? err.details.parameter : null;
  if (!parameter) return null;
  const prefix = `invalid parameter ${parameter}: `;
  const message = String(err.message || '');
  return { parameter, message: message.startsWith(prefix) ? message.slice(prefix.length) : message };
}

/** Key/value facts as a definition list; values may be nodes. Empty values show a dash. */
export function facts(pairs) {
  return h(
    'dl',
    { class: 'facts' },
    pairs
      .filter(Boolean)
      .map(([key, value]) => [h('dt', key), h('dd', value === null || value === undefined || value === '' ? DASH : value)]),
  );
}

/** Segmented buttons: options [{ value, label }], calls onChange(value). */
export function segmented(options, current, onChange, labelText) {
  return h(
    'div',
    { class: 'segmented', role: 'group', 'aria-label': labelText },
    options.map((opt) =>
      h(
        'button',
        { type: 'button', class: opt.value === current ? 'active' : '', 'aria-pressed': String(opt.value === current), dataset: { value: opt.value }, onclick: () => onChange(opt.value) },
        opt.label,
      ),
    ),
  );
}

/** Marks `value` as the chosen option of a segmented() group (for screens that filter in place). */
export function selectSegment(group, value) {
  for (const button of group.querySelectorAll('button')) {
    button.classList.toggle('active', button.dataset.value === value);
    button.setAttribute('aria-pressed', String(button.dataset.value === value));
  }
}

/** The best display name of a person from traits / lead fields. */
export function personName(traits = {}, fallback) {
  const text = (v) => (typeof v === 'string' && v.trim() ? v.trim() : null);
  return text(traits.name) || text(traits.email) || fallback;
}

/**
 * A form with one labelled field (a hint under the label, optional elements before and after),
 * its error line and a submit button calling `onSubmit(value)`; a thrown error is shown at the
 * field (a 429 with its wait) and the button comes back.
 */
export function oneFieldForm({ id, label, hint, inputAttrs, button, busy, onSubmit, lead = [], extra = [] }) {
  const error = h('div', { class: 'form-error', role: 'alert', id: `${id}-error` });
  const input = h('input', { id, name: id, required: true, autocapitalize: 'off', spellcheck: 'false', 'aria-describedby': `${id}-hint ${id}-error`, ...inputAttrs });
  const submit = h('button', { class: 'btn primary block', type: 'submit' }, button);
  const form = h('form', { class: 'login-form', novalidate: true }, ...lead, h('label', { for: id }, label), h('p', { class: 'muted', id: `${id}-hint` }, hint), input, ...extra, error, submit);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!input.value.trim()) {
      error.textContent = `Enter the ${label.toLowerCase()}.`;
      return;
    }
    submit.disabled = true;
    submit.textContent = busy;
    error.textContent = '';
    try {
      await onSubmit(input.value.trim());
    } catch (err) {
      error.textContent = err.status === 429 && err.retryAfter > 0 ? `Too many attempts, retry in ${err.retryAfter} s` : err.message || 'That did not work.';
      submit.disabled = false;
      submit.textContent = button;
      input.select();
    }
  });
  return { form, input };
}
