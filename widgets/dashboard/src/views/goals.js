// The goals screen: what the site counts as a conversion and how often it happened in the date
// range (the overview's range bar, in the route: #/goals?range=30). One row per goal: its name,
// what it matches (a page glob, or a custom event with an optional typed property condition),
// converting visitors, conversion rate (of all the range's visitors), matching events and the
// converting visitors by acquisition source; a chart of conversions per day (per hour for short
// ranges). Users who may manage sites (sites_manage) also get the editor: the goals with remove
// buttons and a form to add one. Goals are site settings: saving reads the site, writes it back
// whole (PUT replaces every setting) with the new list, shows a 422's field messages next to
// their inputs and reloads the report.

import { get, request } from '../api.js';
import { lineChart } from '../charts.js';
import { h, replace, seg } from '../dom.js';
import { DASH, axisDay, axisHour, isoDay, num, pct } from '../format.js';
import { chip, empty, errorBox, kpi, loading, panel, parameterProblem, table } from '../ui.js';
import { rangeBar, readRange } from './overview.js';

const DAY_MS = 86_400_000;
/** Lines in the chart (one tone each): the goals with the most conversions. */
const CHART_GOALS = 3;
const TONES = ['a', 'b', 'c'];
/** The site settings a PUT must send back unchanged (it replaces them all). */
const KEPT_SETTINGS = ['allowed_origins', 'page_rules', 'intent_half_life_days', 'icp', 'chat'];

const KINDS = [
  { value: 'page', label: 'Page' },
  { value: 'event', label: 'Custom event' },
];
const VALUE_TYPES = [
  { value: 'string', label: 'Text', placeholder: 'team' },
  { value: 'number', label: 'Number', placeholder: '5' },
  { value: 'boolean', label: 'Boolean', placeholder: 'true or false' },
];

/** The editor's inputs by the field path a 422 names (after `goals[i].`), and their element ids. */
const FIELDS = {
  goal_id: 'goal-id',
  name: 'goal-name',
  'match.pattern': 'goal-pattern',
  'match.name': 'goal-event',
  'match.property.key': 'goal-prop-key',
  'match.property.value': 'goal-prop-value',
};

const day = (ms) => isoDay(new Date(ms));
const hourTick = (x) => (Date.parse(x) % DAY_MS === 0 ? axisDay(x) : axisHour(x));

/** "page /thanks*", "event signup where plan = \"team\"" (numbers and booleans bare). */
function matchText(match) {
  const m = match || {};
  if (m.kind === 'page') return `page ${m.pattern ?? ''}`;
  if (m.kind !== 'event') return String(m.kind ?? DASH);
  const p = m.property;
  return `event ${m.name ?? ''}${p && typeof p === 'object' ? ` where ${p.key} = ${JSON.stringify(p.value)}` : ''}`;
}

function matchCell(match) {
  const text = matchText(match);
  const at = text.indexOf(' ');
  return h('span', { title: text }, h('span', { class: 'badge' }, at > 0 ? text.slice(0, at) : text), ' ', h('span', { class: 'funnel-step-text' }, at > 0 ? text.slice(at + 1) : ''));
}

function sourcesCell(goal) {
  const sources = Array.isArray(goal.sources) ? goal.sources : [];
  if (!sources.length) return h('span', { class: 'muted' }, DASH);
  return h(
    'span',
    { class: 'chips goal-sources' },
    sources.map((s) => {
      const c = chip(`${s.key} \u00b7 ${num(s.count)}`, `${num(s.count)} converting visitors first came from ${s.key}`);
      c.dataset.source = String(s.key);
      c.dataset.count = String(s.count);
      return c;
    }),
  );
}

function goalsTable(goals) {
  return table(
    [
      { title: 'Goal', className: 'goal-name', cell: (g) => [h('strong', String(g.name ?? '')), h('div', { class: 'muted small' }, String(g.goal_id ?? ''))] },
      { title: 'Matches', className: 'goal-match', cell: (g) => matchCell(g.match) },
      { title: 'Conversions', className: 'num goal-conversions', cell: (g) => num(g.conversions) },
      { title: 'Rate', className: 'num goal-rate', cell: (g) => pct(Number(g.conversion_rate)) },
      { title: 'Events', className: 'num goal-events', cell: (g) => num(g.events) },
      { title: 'By source', className: 'goal-by-source', cell: sourcesCell },
    ],
    goals,
    { className: 'goals-table' },
  ).el;
}

/** Conversions per bucket of the goals with the most conversions, as one line each. */
function conversionsChart(goals, interval) {
  const top = goals
    .filter((g) => Array.isArray(g.series) && Number(g.conversions) > 0)
    .sort((a, b) => Number(b.conversions) - Number(a.conversions))
    .slice(0, CHART_GOALS);
  if (!top.length) return null;
  const now = Date.now();
  const starts = [...new Set(top.flatMap((g) => g.series.map((p) => p.start)))].filter((s) => Date.parse(s) <= now).sort((a, b) => Date.parse(a) - Date.parse(b));
  const byStart = top.map((g) => new Map(g.series.map((p) => [p.start, Number(p.conversions) || 0])));
  const keys = top.map((_, i) => `g${i}`);
  return lineChart(
    starts.map((start) => ({ x: start, values: Object.fromEntries(keys.map((key, i) => [key, byStart[i].get(start) || 0])) })),
    top.map((g, i) => ({ key: keys[i], label: String(g.name ?? g.goal_id), tone: TONES[i] })),
    { xLabel: interval === 'hour' ? hourTick : axisDay, tipLabel: interval === 'hour' ? (x) => `${axisDay(x)} ${axisHour(x)} UTC` : axisDay, name: 'goals', height: 220 },
  );
}

const LABELS = { goal_id: 'ID', name: 'Name', 'match.pattern': 'Page', 'match.name': 'Event name', 'match.property.key': 'Property', 'match.property.value': 'Value' };
const HINTS = { goal_id: 'Letters, digits, _ . - (stays when the name changes)', 'match.property.key': 'Optional: only events whose property has this value' };

/** A labelled input (inside `control`, e.g. with a select) with its error line. */
function field(id, text, input, control, hint) {
  input.id = id;
  input.setAttribute('aria-describedby', `${id}-error`);
  const error = h('div', { class: 'field-error', id: `${id}-error` });
  return { el: h('div', { class: 'field' }, h('label', { for: id }, text), control, hint ? h('div', { class: 'muted small' }, hint) : null, error), error };
}

const textInput = (props) => h('input', { autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', ...props });

/**
 * The goals editor: the site's goals with remove buttons and the add form. `onSaved()` runs
 * after each successful save. Returns { el, load(), focus() }.
 */
function goalsEditor(ctx, onSaved) {
  const { site, signal } = ctx;
  const path = `/api/v1/sites/${seg(site)}`;
  const inputs = {
    goal_id: textInput({ maxlength: 64, placeholder: 'e.g. demo_request' }),
    name: textInput({ maxlength: 100, placeholder: 'e.g. Demo requested' }),
    'match.pattern': textInput({ maxlength: 256, placeholder: '/thanks*  (* matches anything)' }),
    'match.name': textInput({ maxlength: 100, placeholder: 'signup' }),
    'match.property.key': textInput({ maxlength: 64, placeholder: 'plan (optional)' }),
    'match.property.value': textInput({ maxlength: 256 }),
  };
  const kind = h('select', { id: 'goal-kind' }, KINDS.map((k) => h('option', { value: k.value }, k.label)));
  const valueType = h('select', { id: 'goal-prop-type', 'aria-label': 'Value type' }, VALUE_TYPES.map((t) => h('option', { value: t.value }, t.label)));
  const fields = {};
  for (const [name, id] of Object.entries(FIELDS)) {
    const control = name === 'match.property.value' ? h('div', { class: 'matcher' }, valueType, inputs[name]) : inputs[name];
    fields[name] = field(id, LABELS[name], inputs[name], control, HINTS[name]);
    inputs[name].addEventListener('input', () => {
      inputs[name].removeAttribute('aria-invalid');
      fields[name].error.textContent = '';
    });
  }
  const pageFields = h('div', { class: 'form-row' }, fields['match.pattern'].el);
  const eventFields = h('div', { class: 'form-row' }, fields['match.name'].el, fields['match.property.key'].el, fields['match.property.value'].el);
  const sync = () => {
    pageFields.classList.toggle('hidden', kind.value !== 'page');
    eventFields.classList.toggle('hidden', kind.value !== 'event');
    inputs['match.property.value'].placeholder = VALUE_TYPES.find((t) => t.value === valueType.value)?.placeholder || '';
  };
  kind.addEventListener('change', sync);
  valueType.addEventListener('change', sync);
  sync();

  const general = h('div', { class: 'form-error', role: 'alert', id: 'goal-error' });
  const notice = h('div', { class: 'form-notice', role: 'status', id: 'goal-notice' });
  const addButton = h('button', { class: 'btn primary', type: 'submit', id: 'goal-add' }, 'Add goal');
  const form = h(
    'form',
    { class: 'growth-form', id: 'goal-form', novalidate: true },
    h('div', { class: 'form-row' }, fields.goal_id.el, fields.name.el, h('div', { class: 'field' }, h('label', { for: 'goal-kind' }, 'Converts on'), kind)),
    pageFields,
    eventFields,
    general,
    notice,
    h('div', { class: 'form-actions' }, addButton),
  );
  const listBody = h('div', { id: 'goals-list' }, loading('Loading goals…'));
  const editorEl = h(
    'div',
    { class: 'grid', id: 'goals-editor' },
    panel('Edit goals', listBody, { subtitle: `Goals of site ${site}. Reports count the stored events, so a new goal also shows past conversions.` }),
    panel('Add a goal', form),
  );

  const clear = () => {
    general.textContent = '';
    notice.textContent = '';
    for (const name of Object.keys(FIELDS)) {
      fields[name].error.textContent = '';
      inputs[name].removeAttribute('aria-invalid');
    }
  };
  const mark = (name, message) => {
    const error = fields[name].error;
    error.textContent = error.textContent ? `${error.textContent} ${message}` : message;
    inputs[name].setAttribute('aria-invalid', 'true');
  };
  /** Shows a failed save: a 422's fields of goal `index` next to their inputs, the rest above the button. */
  const show = (err, index) => {
    clear();
    const problems = err?.details?.fields;
    if (err?.status !== 422 || !problems || typeof problems !== 'object') {
      general.textContent = err?.message || String(err);
      return;
    }
    const other = [];
    let first = null;
    for (const [key, message] of Object.entries(problems)) {
      const m = /^goals\[(\d+)\]\.(.+)$/.exec(key);
      if (m && Number(m[1]) === index && fields[m[2]]) {
        mark(m[2], String(message));
        first ||= m[2];
      } else other.push(`${key}: ${message}`);
    }
    general.textContent = other.length ? other.join(' · ') : 'Some fields need a change: see the messages next to them.';
    if (first) inputs[first].focus();
  };

  const busy = (on) => {
    addButton.disabled = on;
    addButton.textContent = on ? 'Saving…' : 'Add goal';
    for (const button of listBody.querySelectorAll('button')) button.disabled = on;
  };

  /** Reads the site, PUTs it back with change(its goals), shows the saved list. */
  const save = async (change) => {
    const current = (await get(path, {}, signal)).data || {};
    const body = { name: current.name, goals: change(Array.isArray(current.goals) ? current.goals : []) };
    for (const key of KEPT_SETTINGS) if (current[key] !== undefined && current[key] !== null) body[key] = current[key];
    const saved = (await request('PUT', path, { body, signal })).data || {};
    showList(Array.isArray(saved.goals) ? saved.goals : body.goals);
    onSaved();
  };

  const remove = async (goal) => {
    clear();
    busy(true);
    try {
      await save((goals) => goals.filter((g) => g.goal_id !== goal.goal_id));
      if (!signal.aborted) notice.textContent = `Goal "${goal.name}" removed.`;
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') show(err, -1);
    } finally {
      busy(false);
    }
  };

  const showList = (goals) => {
    replace(
      listBody,
      goals.length
        ? table(
            [
              { title: 'ID', className: 'nowrap', cell: (g) => String(g.goal_id ?? '') },
              { title: 'Name', cell: (g) => String(g.name ?? '') },
              { title: 'Matches', cell: (g) => matchCell(g.match) },
              {
                title: '',
                className: 'num',
                cell: (g) => h('button', { class: 'btn small goal-remove', type: 'button', 'aria-label': `Remove goal ${g.name}`, dataset: { goal: String(g.goal_id ?? '') }, onclick: () => remove(g) }, 'Remove'),
              },
            ],
            goals,
          ).el
        : h('p', { class: 'muted small' }, 'This site has no goals yet.'),
    );
  };

  /** The goal in the form, or { problems } the browser can tell without the server. */
  const values = () => {
    const text = (name) => inputs[name].value.trim();
    const goal = { goal_id: text('goal_id'), name: text('name') };
    if (kind.value === 'page') {
      goal.match = { kind: 'page', pattern: text('match.pattern') };
      return { goal };
    }
    goal.match = { kind: 'event', name: text('match.name') };
    const key = text('match.property.key');
    const raw = inputs['match.property.value'].value;
    if (!key && !raw.trim()) return { goal };
    let value = raw;
    if (valueType.value === 'number') {
      value = Number(raw.trim());
      if (!raw.trim() || !Number.isFinite(value)) return { problems: { 'match.property.value': 'Enter a number, e.g. 5 or 2.5.' } };
    } else if (valueType.value === 'boolean') {
      const word = raw.trim().toLowerCase();
      if (word !== 'true' && word !== 'false') return { problems: { 'match.property.value': 'Enter true or false.' } };
      value = word === 'true';
    }
    goal.match.property = { key, value };
    return { goal };
  };

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clear();
    const { goal, problems } = values();
    if (problems) {
      for (const [name, message] of Object.entries(problems)) mark(name, message);
      inputs[Object.keys(problems)[0]].focus();
      return;
    }
    busy(true);
    let index = -1;
    try {
      await save((goals) => {
        index = goals.length;
        return [...goals, goal];
      });
      if (signal.aborted) return;
      form.reset();
      sync();
      notice.textContent = `Goal "${goal.name}" added.`;
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') show(err, index);
    } finally {
      busy(false);
    }
  });

  const load = async () => {
    try {
      const current = (await get(path, {}, signal)).data || {};
      if (!signal.aborted) showList(Array.isArray(current.goals) ? current.goals : []);
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(listBody, errorBox(err, () => load()));
    }
  };
  const focus = () => {
    form.scrollIntoView({ block: 'center' });
    inputs.goal_id.focus();
  };
  return { el: editorEl, load, focus };
}

export async function renderGoals(ctx) {
  const { el, site, signal } = ctx;
  const range = readRange(ctx.query);
  const interval = range.days <= 2 ? 'hour' : 'day';
  const manage = ctx.can('sites_manage');

  const kpis = h('div', { class: 'kpis hidden', id: 'goals-kpis' });
  const reportBody = h('div', loading('Counting conversions…'));
  const chartBody = h('div');
  const chart = panel(interval === 'hour' ? 'Conversions per hour' : 'Conversions per day', chartBody, { id: 'goals-chart', subtitle: `Converting visitors of the ${CHART_GOALS} goals with the most conversions` });
  chart.classList.add('hidden');
  let editor = null;
  const loadReport = async () => {
    let data;
    try {
      data = (await get('/api/v1/analytics/goals', { site_id: site, from: day(range.fromMs), to: day(range.toMs), by: 'source', interval }, signal)).data || {};
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      const problem = parameterProblem(err);
      kpis.classList.add('hidden');
      replace(reportBody, problem ? empty('Nothing to show', `${problem.parameter === 'from' || problem.parameter === 'to' ? 'Date range' : problem.parameter}: ${problem.message}`) : errorBox(err, () => loadReport()));
      chart.classList.add('hidden');
      return;
    }
    if (signal.aborted) return;
    const goals = Array.isArray(data.goals) ? data.goals : [];
    if (!goals.length) {
      replace(
        reportBody,
        empty('No goals yet', manage ? 'A goal is a page (e.g. /thanks*) or a custom event (e.g. signup where plan = "team"). Add one in "Edit goals" below.' : 'An admin defines the goals of this site.'),
        manage ? h('div', { class: 'form-actions' }, h('button', { class: 'btn primary', type: 'button', id: 'goals-empty-add', onclick: () => editor?.focus() }, 'Add a goal')) : null,
      );
      chart.classList.add('hidden');
      kpis.classList.add('hidden');
      return;
    }
    const best = goals.reduce((a, b) => (Number(b.conversion_rate) > Number(a.conversion_rate) ? b : a));
    replace(
      kpis,
      kpi('goal_visitors', 'Visitors', num(data.visitors), { note: 'Every conversion rate is of these visitors' }),
      kpi('goal_best', 'Best conversion rate', pct(Number(best.conversion_rate)), { sub: String(best.name ?? best.goal_id) }),
    );
    kpis.classList.remove('hidden');
    replace(
      reportBody,
      goalsTable(goals),
      h('p', { class: 'muted small table-note' }, 'Conversions: visitors with a matching event in the range. Rate: of all the range\'s visitors. Events: every matching event. By source: where the converting visitors first came from (UTM source, else referrer).'),
    );
    const lines = conversionsChart(goals, interval);
    replace(chartBody, lines || empty('No conversions in this range', 'Pick a longer range, or check what the goals match.'));
    chart.classList.remove('hidden');
  };
  editor = manage ? goalsEditor(ctx, () => loadReport()) : null;

  replace(el, rangeBar(range, (params) => ctx.go(`#/goals?${new URLSearchParams(params)}`)), kpis, panel('Goals', reportBody, { id: 'goals-report', subtitle: range.text }), chart, editor?.el);
  await Promise.all([loadReport(), editor?.load()]);
}
