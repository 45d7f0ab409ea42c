// The retention screen: daily or weekly cohorts (by first visit, or by a first page or custom
// event) and the share of each cohort that comes back 1, 2, … periods later (on any event, a
// page or a custom event), as a triangle of percentages shaded by their value, with a
// size-weighted average row. The settings live in the route (#/retention?period=week&cohorts=8
// &start=first_visit&return=any), so a reload shows the same grid.

import { get } from '../api.js';
import { h, replace } from '../dom.js';
import { isoDay, num, pct } from '../format.js';
import { empty, errorBox, loading, panel, parameterProblem } from '../ui.js';

const PERIODS = [
  { value: 'day', label: 'Daily', unit: 'Day' },
  { value: 'week', label: 'Weekly', unit: 'Week' },
];
const MAX_COHORTS = 26;
const DEFAULT_COHORTS = 8;

const STARTS = [
  { value: 'first_visit', label: 'First visit' },
  { value: 'page', label: 'Page', placeholder: '/signup*' },
  { value: 'event', label: 'Custom event', placeholder: 'signup' },
];
const RETURNS = [
  { value: 'any', label: 'Any activity' },
  { value: 'page', label: 'Page', placeholder: '/app*' },
  { value: 'event', label: 'Custom event', placeholder: 'login' },
];

const PARAMETER_LABELS = { period: 'Period', cohorts: 'Cohorts', start: 'Cohort start', return: 'Returns on', from: 'Date range' };

/** "event:signup" → { kind: 'event', value: 'signup' }; a bare word ("any") is its own kind. */
function parseMatcher(text, fallback) {
  if (!text) return { kind: fallback, value: '' };
  const at = text.indexOf(':');
  return at > 0 ? { kind: text.slice(0, at), value: text.slice(at + 1) } : { kind: text, value: '' };
}

const matcherText = (m) => (m.kind === 'page' || m.kind === 'event' ? `${m.kind}:${m.value}` : m.kind);

function readSettings(query) {
  const period = PERIODS.some((p) => p.value === query.get('period')) ? query.get('period') : 'week';
  const n = Number(query.get('cohorts'));
  const cohorts = Number.isInteger(n) && n >= 1 && n <= MAX_COHORTS ? n : DEFAULT_COHORTS;
  const start = parseMatcher(query.get('start'), 'first_visit');
  const back = parseMatcher(query.get('return'), 'any');
  return {
    period,
    cohorts,
    start: STARTS.some((s) => s.value === start.kind) ? start : { kind: 'first_visit', value: '' },
    return: RETURNS.some((r) => r.value === back.kind) ? back : { kind: 'any', value: '' },
  };
}

/** A kind select and its text input (hidden for kinds without a value). */
function matcherField(id, labelText, kinds, current) {
  const kind = h('select', { id: `${id}-kind`, 'aria-label': `${labelText}: kind` }, kinds.map((k) => h('option', { value: k.value, selected: k.value === current.kind }, k.label)));
  const value = h('input', { id: `${id}-value`, 'aria-label': `${labelText}: page or event`, value: current.value, autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', maxlength: 256 });
  const sync = () => {
    const k = kinds.find((x) => x.value === kind.value);
    value.classList.toggle('hidden', !k?.placeholder);
    value.placeholder = k?.placeholder || '';
  };
  kind.addEventListener('change', () => {
    sync();
    if (!value.classList.contains('hidden')) value.focus();
  });
  sync();
  return {
    el: h('div', { class: 'field' }, h('label', { for: `${id}-kind` }, labelText), h('div', { class: 'matcher' }, kind, value)),
    kind,
    value,
    get: () => ({ kind: kind.value, value: value.value.trim() }),
  };
}

/** The shade of a rate: the accent colour, more opaque for higher rates. */
function shade(rate) {
  const r = Math.max(0, Math.min(1, Number(rate) || 0));
  return { 'background-color': `rgba(79, 70, 229, ${(0.06 + 0.84 * r).toFixed(3)})` };
}

function rateCell(rate, returning, size) {
  const r = Number(rate) || 0;
  return h('td', { class: `ret-cell${r >= 0.5 ? ' strong' : ''}`, style: shade(r), title: `${num(returning)} of ${num(size)} visitors` }, pct(r));
}

function grid(data, unit) {
  const cohorts = Array.isArray(data.cohorts) ? data.cohorts : [];
  const periods = Math.max(0, ...cohorts.map((c) => (Array.isArray(c.returning) ? c.returning.length : 0)));
  const label = (start) => {
    const d = new Date(start);
    if (Number.isNaN(d.getTime())) return String(start ?? '');
    return data.period === 'week' ? `Week of ${isoDay(d)}` : isoDay(d);
  };
  const body = cohorts.map((c) => {
    const size = Number(c.size) || 0;
    const returning = Array.isArray(c.returning) ? c.returning : [];
    const rates = Array.isArray(c.rates) ? c.rates : [];
    return h(
      'tr',
      { dataset: { cohort: String(c.start ?? '') } },
      h('th', { scope: 'row', class: 'ret-start nowrap' }, label(c.start)),
      h('td', { class: 'num ret-size' }, num(size)),
      Array.from({ length: periods }, (_, n) => (n < returning.length ? (size ? rateCell(rates[n], returning[n], size) : h('td', { class: 'ret-cell muted' }, '\u2014')) : h('td', { class: 'ret-none' }))),
    );
  });
  // The average of each period over the cohorts that reached it, weighted by cohort size.
  const average = Array.from({ length: periods }, (_, n) => {
    let total = 0;
    let back = 0;
    for (const c of cohorts) {
      if (Array.isArray(c.returning) && n < c.returning.length) {
        total += Number(c.size) || 0;
        back += Number(c.returning[n]) || 0;
      }
    }
    return { total, back };
  });
  const allSize = cohorts.reduce((sum, c) => sum + (Number(c.size) || 0), 0);
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'data retention', dataset: { chart: 'retention' } },
      h('thead', h('tr', h('th', { scope: 'col' }, 'Cohort'), h('th', { scope: 'col', class: 'num' }, 'Visitors'), Array.from({ length: periods }, (_, n) => h('th', { scope: 'col', class: 'ret-head' }, `${unit} ${n}`)))),
      h('tbody', body),
      h(
        'tfoot',
        h(
          'tr',
          { class: 'ret-average' },
          h('th', { scope: 'row' }, 'Average'),
          h('td', { class: 'num' }, num(allSize)),
          average.map((a) => (a.total ? rateCell(a.back / a.total, a.back, a.total) : h('td', { class: 'ret-none' }))),
        ),
      ),
    ),
  );
}

export async function renderRetention(ctx) {
  const { el, site, signal } = ctx;
  const settings = readSettings(ctx.query);
  const periodSelect = h('select', { id: 'retention-period' }, PERIODS.map((p) => h('option', { value: p.value, selected: p.value === settings.period }, p.label)));
  const cohortsInput = h('input', { id: 'retention-cohorts', type: 'number', min: 1, max: MAX_COHORTS, step: 1, value: settings.cohorts });
  const start = matcherField('retention-start', 'Cohort start', STARTS, settings.start);
  const back = matcherField('retention-return', 'Returns on', RETURNS, settings.return);
  const error = h('div', { class: 'form-error', role: 'alert', id: 'retention-error' });
  const form = h(
    'form',
    { class: 'growth-form', id: 'retention-form', novalidate: true },
    h(
      'div',
      { class: 'form-row' },
      h('div', { class: 'field' }, h('label', { for: 'retention-period' }, 'Period'), periodSelect),
      h('div', { class: 'field' }, h('label', { for: 'retention-cohorts' }, 'Cohorts'), cohortsInput),
    ),
    h('div', { class: 'form-row' }, start.el, back.el),
    error,
    h('div', { class: 'form-actions' }, h('button', { class: 'btn primary', type: 'submit', id: 'retention-run' }, 'Apply')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams({ period: periodSelect.value, cohorts: cohortsInput.value.trim(), start: matcherText(start.get()), return: matcherText(back.get()) });
    ctx.go(`#/retention?${params}`);
  });

  const unit = PERIODS.find((p) => p.value === settings.period).unit;
  const body = h('div', loading('Computing retention…'));
  const startText = settings.start.kind === 'first_visit' ? 'first visit' : matcherText(settings.start);
  const returnText = settings.return.kind === 'any' ? 'any activity' : matcherText(settings.return);
  replace(
    el,
    panel('Cohorts', form, { id: 'retention-builder', subtitle: 'Visitors grouped by the UTC day or ISO week (from Monday) they started in' }),
    panel('Retention', body, { id: 'retention-panel', subtitle: `${settings.cohorts} ${settings.period === 'week' ? 'weekly' : 'daily'} cohorts by ${startText}, returning on ${returnText}` }),
  );

  let data;
  try {
    data = (await get('/api/v1/analytics/retention', { site_id: site, period: settings.period, cohorts: settings.cohorts, start: matcherText(settings.start), return: matcherText(settings.return) }, signal)).data || {};
  } catch (err) {
    if (signal.aborted || err?.name === 'AbortError') return;
    const problem = parameterProblem(err);
    if (!problem) {
      replace(body, errorBox(err, () => ctx.go(location.hash)));
      return;
    }
    const { parameter } = problem;
    error.dataset.parameter = parameter;
    error.textContent = `${PARAMETER_LABELS[parameter] || parameter}: ${problem.message}`;
    const target = { period: periodSelect, cohorts: cohortsInput, start: start.value, return: back.value }[parameter];
    if (target) target.setAttribute('aria-invalid', 'true');
    replace(body, empty('Nothing to show', 'Correct the settings, then Apply.'));
    return;
  }
  if (signal.aborted) return;
  const cohorts = Array.isArray(data.cohorts) ? data.cohorts : [];
  if (!cohorts.some((c) => Number(c.size) > 0)) {
    replace(body, empty('No cohorts in this range', 'No visitor started in these periods. Try more cohorts, weekly periods or another start.'));
    return;
  }
  replace(body, grid(data, unit), h('p', { class: 'muted small table-note' }, `${unit} 0 is the cohort itself; later columns are the share of the cohort active again that many ${settings.period}s later. Hover a cell for the counts.`));
}
