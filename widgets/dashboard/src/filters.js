// Analytics filters of the overview: `dimension:op:value` conditions kept in the route's query as
// repeated `filter=` parameters (so reload and back/forward keep them) together with
// `compare=previous`; the filter bar (removable chips, a form to add a condition, the compare
// toggle, the server's message when it refuses one) and the comparison line of a KPI tile.
// Filter values come from tracked websites and from the user: they are only set as text.

import { h, replace } from './dom.js';
import { DASH, num } from './format.js';

export const DIMENSIONS = [
  { value: 'page', label: 'Page' },
  { value: 'source', label: 'Source' },
  { value: 'utm_source', label: 'UTM source' },
  { value: 'country', label: 'Country' },
  { value: 'device', label: 'Device' },
  { value: 'browser', label: 'Browser' },
];

export const OPS = [
  { value: 'is', label: 'is' },
  { value: 'is_not', label: 'is not' },
  { value: 'prefix', label: 'starts with' },
  { value: 'glob', label: 'matches' },
];

/** The overview's top lists and the dimension whose values (their keys) each one lists. */
export const LIST_DIMENSIONS = {
  top_pages: 'page',
  top_referrers: 'source',
  utm_sources: 'utm_source',
  countries: 'country',
  devices: 'device',
  browsers: 'browser',
};

const labelOf = (list, value) => list.find((x) => x.value === value)?.label || value;

/**
 * One filter from its `dimension:op:value` text (the value may hold ':'). `raw` is what goes back
 * to the URL and the API, unchanged: a malformed one is left for the server to refuse.
 */
export function parseFilter(raw) {
  const text = String(raw);
  const first = text.indexOf(':');
  const second = first < 0 ? -1 : text.indexOf(':', first + 1);
  if (second < 0) return { raw: text, dimension: text, op: '', value: '' };
  return { raw: text, dimension: text.slice(0, first), op: text.slice(first + 1, second), value: text.slice(second + 1) };
}

export const makeFilter = (dimension, op, value) => parseFilter(`${dimension}:${op}:${value}`);

/** The route's filters, in their order. */
export const readFilters = (query) => query.getAll('filter').filter(Boolean).map(parseFilter);

export const readCompare = (query) => query.get('compare') === 'previous';

/** The overview's route query: the range's parameters, then the filters, then compare. */
export function overviewQuery(rangeParams, filters, compare) {
  const params = new URLSearchParams(rangeParams);
  for (const f of filters) params.append('filter', f.raw);
  if (compare) params.set('compare', 'previous');
  return params.toString();
}

/**
 * `filters` with `added` appended; an equal condition is not repeated, and `is` and `is_not` of
 * the same dimension and value replace each other (both can never hold).
 */
export function withFilter(filters, added) {
  const opposite = { is: 'is_not', is_not: 'is' }[added.op];
  const kept = filters.filter((f) => f.raw !== added.raw && !(opposite && f.dimension === added.dimension && f.op === opposite && f.value === added.value));
  return [...kept, added];
}

/** A ratio of change (-0.25) as a signed percentage ("−25%"); the dash when there is none. */
export function signedPercent(change) {
  if (typeof change !== 'number' || !Number.isFinite(change)) return DASH;
  const abs = Math.abs(change);
  if (abs < 0.0005) return '0%';
  return `${change > 0 ? '+' : '\u2212'}${(abs * 100).toFixed(abs < 0.1 ? 1 : 0)}%`;
}

/**
 * The comparison under a KPI: the previous period's value and the change (▲/▼ and a signed
 * percentage; no arrow when there is no change or none can be computed: null when the previous
 * value is 0).
 */
export function compareLine(previous, change) {
  const known = typeof change === 'number' && Number.isFinite(change);
  const dir = known && Math.abs(change) >= 0.0005 ? (change > 0 ? 'up' : 'down') : '';
  return h(
    'span',
    { class: 'kpi-compare', dataset: { previous: previous ?? '', change: known ? change : 'null' } },
    'Previous: ',
    h('b', { class: 'kpi-previous' }, num(previous)),
    ' · ',
    h(
      'span',
      { class: `kpi-change ${dir}`.trim(), title: known ? undefined : 'No change can be computed: nothing in the previous period' },
      dir ? h('span', { class: 'kpi-arrow', 'aria-hidden': 'true' }, dir === 'up' ? '\u25B2' : '\u25BC') : null,
      signedPercent(change),
    ),
  );
}

function selectOf(id, options, current, labelText) {
  return h('select', { id, 'aria-label': labelText }, options.map((o) => h('option', { value: o.value, selected: o.value === current }, o.label)));
}

/**
 * The filter bar. `format(dimension, value)` renders an `is`/`is_not` value (e.g. a country
 * code as its name). Callbacks: `onRemove(index)`, `onCompare(on)`, and `onAdd(filter)` which
 * resolves to an error message to show (the server refused it) or null. Returns { el, showError }.
 */
export function filterBar({ filters, compare, format = (d, v) => v, onRemove, onAdd, onCompare }) {
  const error = h('p', { class: 'form-error filter-error', id: 'filter-error', role: 'alert' });
  const showError = (message) => replace(error, message || '');

  const chips = filters.length
    ? filters.map((f, index) => {
        const shown = f.op === 'is' || f.op === 'is_not' ? format(f.dimension, f.value) : f.value;
        const text = `${labelOf(DIMENSIONS, f.dimension)} ${labelOf(OPS, f.op)} ${shown}`;
        return h(
          'span',
          { class: 'filter-chip', role: 'listitem', title: f.raw, dataset: { dimension: f.dimension, op: f.op, value: f.value } },
          h('span', { class: 'filter-dimension' }, labelOf(DIMENSIONS, f.dimension)),
          ' ',
          h('span', { class: 'filter-op' }, labelOf(OPS, f.op)),
          ' ',
          h('span', { class: 'filter-value' }, shown),
          h('button', { type: 'button', class: 'filter-remove', 'aria-label': `Remove filter: ${text}`, title: 'Remove this filter', onclick: () => onRemove(index) }, '\u00D7'),
        );
      })
    : h('span', { class: 'muted small' }, 'All traffic. Click a row of a list below to filter by it.');

  const dimension = selectOf('filter-dimension', DIMENSIONS, 'page', 'Filter dimension');
  const op = selectOf('filter-op', OPS, 'glob', 'Filter operator');
  const value = h('input', { id: 'filter-value', type: 'text', placeholder: '/blog/*', 'aria-label': 'Filter value', autocomplete: 'off' });
  const add = h('button', { class: 'btn small', type: 'submit', id: 'filter-add' }, 'Add filter');
  const form = h('form', { class: 'filter-form', id: 'filter-form', novalidate: true }, dimension, op, value, add);
  value.addEventListener('input', () => showError(''));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!value.value) {
      showError('Enter a value to filter by (with "matches", * stands for any characters).');
      value.focus();
      return;
    }
    add.disabled = true;
    try {
      const message = await onAdd(makeFilter(dimension.value, op.value, value.value));
      if (message) showError(message);
    } finally {
      add.disabled = false;
    }
  });

  const toggle = h(
    'button',
    { type: 'button', class: `btn small compare-toggle${compare ? ' active' : ''}`, id: 'compare-toggle', 'aria-pressed': String(compare), onclick: () => onCompare(!compare) },
    'Compare with previous period',
  );

  const el = h(
    'div',
    { class: 'filter-bar', id: 'filter-bar' },
    h('div', { class: 'filter-row' }, h('span', { class: 'filter-title' }, 'Filters'), h('div', { class: 'filter-chips', role: 'list', 'aria-label': 'Active filters' }, chips), toggle),
    form,
    error,
  );
  return { el, showError };
}
