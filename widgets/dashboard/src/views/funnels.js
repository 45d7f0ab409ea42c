// The funnels screen: a step builder (2 to 8 steps, each a page glob or a custom event name),
// the conversion window, the step order and the date range. "Run" puts the funnel in the route
// (#/funnels?step1=page:/&step2=event:signup&window=1d&order=ordered&range=7), so a reload or a
// shared link shows the same report: one bar per step with its visitors, share of step 1,
// drop-off and median time from the previous step. A 400 names the parameter at fault (a step,
// the window, the range): its row is marked and the server's message shown.

import { get } from '../api.js';
import { h, replace } from '../dom.js';
import { duration, isoDay, num, pct } from '../format.js';
import { empty, errorBox, kpi, loading, panel, parameterProblem } from '../ui.js';
import { rangeBar, readRange } from './overview.js';

const DAY_MS = 86_400_000;
const MIN_STEPS = 2;
const MAX_STEPS = 8;

const KINDS = [
  { value: 'page', label: 'Page', placeholder: '/pricing*  (* matches anything)' },
  { value: 'event', label: 'Event', placeholder: 'signup  (custom event name)' },
];

const WINDOWS = [
  { value: '30m', label: '30 minutes' },
  { value: '1h', label: '1 hour' },
  { value: '1d', label: '1 day' },
  { value: '7d', label: '7 days' },
  { value: '30d', label: '30 days' },
];

const ORDERS = [
  { value: 'ordered', label: 'In order', hint: 'Steps in this order; other events may come between them.' },
  { value: 'strict', label: 'Strictly in order', hint: 'Each step is the very next pageview or custom event.' },
  { value: 'any', label: 'Any order', hint: 'Step k counts the visitors who did any k of the steps.' },
];

const DEFAULT_STEPS = [
  { kind: 'page', value: '/' },
  { kind: 'page', value: '/pricing*' },
];

/** "page:/pricing*" → { kind: 'page', value: '/pricing*' }; text without a known kind is a page. */
function parseStep(text) {
  const at = text.indexOf(':');
  const kind = at > 0 ? text.slice(0, at) : '';
  return KINDS.some((k) => k.value === kind) ? { kind, value: text.slice(at + 1) } : { kind: 'page', value: text };
}

/** The funnel of the route: step1… up to the first gap, window, order. */
function readFunnel(query) {
  const steps = [];
  for (let i = 1; i <= MAX_STEPS && query.has(`step${i}`); i++) steps.push(parseStep(query.get(`step${i}`)));
  const order = query.get('order');
  return { steps, window: query.get('window') || '1d', order: ORDERS.some((o) => o.value === order) ? order : 'ordered' };
}

/** The route's query parameters of a funnel and a range ({ range } or { from, to }). */
function funnelParams(funnel, rangeParams) {
  const params = new URLSearchParams();
  funnel.steps.forEach((step, i) => params.set(`step${i + 1}`, `${step.kind}:${step.value}`));
  params.set('window', funnel.window);
  params.set('order', funnel.order);
  for (const [key, value] of Object.entries(rangeParams)) params.set(key, value);
  return params;
}

/** What a 400 blames, for people: "Step 2", "Window", "Date range". */
function parameterLabel(parameter) {
  const step = /^step(\d+)$/.exec(parameter);
  if (step) return `Step ${step[1]}`;
  if (parameter === 'window') return 'Window';
  if (parameter === 'order') return 'Order';
  if (parameter === 'from' || parameter === 'to') return 'Date range';
  return parameter;
}

function stepLabel(step) {
  const kind = KINDS.find((k) => k.value === step.kind);
  return [h('span', { class: `badge step-kind-${step.kind}` }, kind ? kind.label : step.kind), h('span', { class: 'funnel-step-text' }, step.value)];
}

/** One horizontal bar per step, as wide as its share of step 1. */
function funnelChart(report) {
  const steps = Array.isArray(report.steps) ? report.steps : [];
  const first = Number(steps[0]?.visitors) || 0;
  const any = report.order === 'any';
  return h(
    'ol',
    { class: 'funnel', dataset: { chart: 'funnel' } },
    steps.map((s, i) => {
      const visitors = Number(s.visitors) || 0;
      const previous = i ? Number(steps[i - 1].visitors) || 0 : 0;
      const share = first ? visitors / first : 0;
      return h(
        'li',
        { class: 'funnel-row', dataset: { step: i + 1 } },
        h(
          'div',
          { class: 'funnel-label', title: String(s.step ?? '') },
          h('span', { class: 'step-num' }, String(i + 1)),
          any ? h('span', { class: 'funnel-step-text' }, `${i + 1} of ${steps.length} steps`) : stepLabel(parseStep(String(s.step ?? ''))),
        ),
        h('div', { class: 'funnel-track', 'aria-hidden': 'true' }, h('span', { class: 'funnel-fill', style: { width: `${(share * 100).toFixed(1)}%` } })),
        h(
          'div',
          { class: 'funnel-figures' },
          h('span', h('b', { class: 'funnel-visitors' }, num(visitors)), ' visitors'),
          h('span', h('b', { class: 'funnel-rate' }, pct(Number(s.conversion_rate))), ' of step 1'),
          i ? h('span', { class: 'funnel-drop muted' }, `${num(s.drop_off)} dropped (${pct(previous ? Number(s.drop_off) / previous : null)})`) : null,
          i ? h('span', { class: 'funnel-time muted', title: `Median time from step ${i} to step ${i + 1}` }, `median ${duration(s.median_ms_from_previous)}`) : null,
        ),
      );
    }),
  );
}

export async function renderFunnels(ctx) {
  const { el, site, signal } = ctx;
  const range = readRange(ctx.query);
  const funnel = readFunnel(ctx.query);
  const rangeParams = range.key === 'custom' ? { from: isoDay(new Date(range.fromMs)), to: isoDay(new Date(range.toMs - DAY_MS)) } : { range: range.key };

  // The builder: one row per step.
  const list = h('ol', { class: 'funnel-steps', id: 'funnel-steps' });
  const rows = [];
  const addButton = h('button', { class: 'btn small', type: 'button', id: 'funnel-add' }, '+ Add step');
  const renumber = () => {
    rows.forEach((row, i) => {
      const n = i + 1;
      row.li.dataset.step = String(n);
      row.num.textContent = String(n);
      row.kind.setAttribute('aria-label', `Step ${n} kind`);
      row.value.setAttribute('aria-label', `Step ${n} page or event`);
      row.remove.setAttribute('aria-label', `Remove step ${n}`);
      row.remove.disabled = rows.length <= MIN_STEPS;
    });
    addButton.disabled = rows.length >= MAX_STEPS;
  };
  const addRow = (step) => {
    const kind = h('select', { class: 'step-kind' }, KINDS.map((k) => h('option', { value: k.value, selected: k.value === step.kind }, k.label)));
    const value = h('input', { class: 'step-value', value: step.value, autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', maxlength: 256 });
    const remove = h('button', { class: 'btn small step-remove', type: 'button', title: 'Remove this step' }, '\u00d7');
    const row = { li: h('li', { class: 'funnel-step' }, h('span', { class: 'step-num', 'aria-hidden': 'true' }), kind, value, remove), num: null, kind, value, remove };
    row.num = row.li.firstChild;
    const hint = () => {
      value.placeholder = KINDS.find((k) => k.value === kind.value)?.placeholder || '';
    };
    kind.addEventListener('change', hint);
    hint();
    remove.addEventListener('click', () => {
      rows.splice(rows.indexOf(row), 1);
      row.li.remove();
      renumber();
    });
    rows.push(row);
    list.append(row.li);
    return row;
  };
  for (const step of funnel.steps.length ? funnel.steps : DEFAULT_STEPS) addRow(step);
  while (rows.length < MIN_STEPS) addRow({ kind: 'event', value: '' });
  renumber();
  addButton.addEventListener('click', () => {
    if (rows.length >= MAX_STEPS) return;
    addRow({ kind: 'event', value: '' }).value.focus();
    renumber();
  });

  const windows = WINDOWS.some((w) => w.value === funnel.window) ? WINDOWS : [...WINDOWS, { value: funnel.window, label: funnel.window }];
  const windowSelect = h('select', { id: 'funnel-window' }, windows.map((w) => h('option', { value: w.value, selected: w.value === funnel.window }, w.label)));
  const orderSelect = h('select', { id: 'funnel-order' }, ORDERS.map((o) => h('option', { value: o.value, selected: o.value === funnel.order }, o.label)));
  const orderHint = h('div', { class: 'muted small' });
  const showHint = () => {
    orderHint.textContent = ORDERS.find((o) => o.value === orderSelect.value)?.hint || '';
  };
  orderSelect.addEventListener('change', showHint);
  showHint();
  const error = h('div', { class: 'form-error', role: 'alert', id: 'funnel-error' });
  const form = h(
    'form',
    { class: 'growth-form', id: 'funnel-form', novalidate: true },
    h('div', { class: 'field' }, h('span', { class: 'field-label' }, 'Steps'), list, h('div', { class: 'form-actions' }, addButton, h('span', { class: 'muted small' }, 'A page path (glob, * matches anything) or a custom event name, 2 to 8 steps.'))),
    h(
      'div',
      { class: 'form-row' },
      h('div', { class: 'field' }, h('label', { for: 'funnel-window' }, 'Conversion window'), windowSelect, h('div', { class: 'muted small' }, 'From step 1 to the last step.')),
      h('div', { class: 'field' }, h('label', { for: 'funnel-order' }, 'Order'), orderSelect, orderHint),
    ),
    error,
    h('div', { class: 'form-actions' }, h('button', { class: 'btn primary', type: 'submit', id: 'funnel-run' }, 'Run')),
  );
  // The builder as it is now (edits included), as route parameters.
  const current = () => ({
    steps: rows.map((row) => ({ kind: row.kind.value, value: row.value.value.trim() })),
    window: windowSelect.value,
    order: orderSelect.value,
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    ctx.go(`#/funnels?${funnelParams(current(), rangeParams)}`);
  });

  const reportBody = h('div');
  const report = panel('Funnel', reportBody, { id: 'funnel-report', subtitle: range.text });
  replace(
    el,
    rangeBar(range, (params) => ctx.go(`#/funnels?${funnelParams(current(), params)}`)),
    panel('Steps', form, { id: 'funnel-builder', subtitle: 'Visitors who start with step 1 in the date range and reach the later steps within the window' }),
    report,
  );

  if (!funnel.steps.length) {
    replace(reportBody, empty('No funnel yet', 'Choose the steps, then Run.'));
    return;
  }
  replace(reportBody, loading('Computing the funnel…'));
  const query = { site_id: site, from: isoDay(new Date(range.fromMs)), to: isoDay(new Date(range.toMs)), window: funnel.window, order: funnel.order };
  funnel.steps.forEach((step, i) => {
    query[`step${i + 1}`] = `${step.kind}:${step.value}`;
  });
  let data;
  try {
    data = (await get('/api/v1/analytics/funnel', query, signal)).data || {};
  } catch (err) {
    if (signal.aborted || err?.name === 'AbortError') return;
    const problem = parameterProblem(err);
    if (!problem) {
      replace(reportBody, errorBox(err, () => ctx.go(location.hash)));
      return;
    }
    const { parameter } = problem;
    error.dataset.parameter = parameter;
    error.textContent = `${parameterLabel(parameter)}: ${problem.message}`;
    const step = /^step(\d+)$/.exec(parameter);
    const target = step ? rows[Number(step[1]) - 1]?.value : parameter === 'window' ? windowSelect : parameter === 'order' ? orderSelect : null;
    if (target) {
      target.setAttribute('aria-invalid', 'true');
      target.addEventListener('input', () => target.removeAttribute('aria-invalid'), { once: true });
    }
    replace(reportBody, empty('Nothing to show', 'Correct the funnel, then Run.'));
    return;
  }
  if (signal.aborted) return;
  const steps = Array.isArray(data.steps) ? data.steps : [];
  const first = steps[0];
  const last = steps[steps.length - 1];
  if (!first || !(Number(first.visitors) > 0)) {
    replace(reportBody, empty('Nobody started this funnel', 'No visitor did step 1 in this date range. Check the step or pick a longer range.'));
    return;
  }
  const windowText = windows.find((w) => w.value === funnel.window)?.label || funnel.window;
  replace(
    reportBody,
    h(
      'div',
      { class: 'kpis funnel-kpis' },
      kpi('funnel_started', 'Started', num(first.visitors)),
      kpi('funnel_completed', 'Completed', num(last.visitors)),
      kpi('funnel_conversion', 'Conversion', pct(Number(last.conversion_rate)), { note: 'Visitors of the last step / visitors of step 1' }),
    ),
    funnelChart(data),
    h('p', { class: 'muted small' }, `Window ${windowText} · ${ORDERS.find((o) => o.value === data.order)?.label.toLowerCase() || data.order} · times are medians from the previous step.`),
  );
}
