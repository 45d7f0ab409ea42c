// Accounts & health screens: the executive dashboard tiles (missing figures as "—" with the
// server's reason as tooltip), customer accounts by health with churn risk and its top driver,
// open playbook tasks, and one account's health: components, churn drivers, inputs, history.

import { get } from '../api.js';
import { lineChart, meters } from '../charts.js';
import { h, replace, seg } from '../dom.js';
import { DASH, axisDay, dateTime, day, dec, label, money, num, pct, signed } from '../format.js';
import { badge, empty, errorBox, facts, kpi, loading, panel, riskBadge, scoreBar, segmented, table } from '../ui.js';

const RISKS = [
  { value: '', label: 'All' },
  { value: 'critical', label: 'Critical' },
  { value: 'at_risk', label: 'At risk' },
  { value: 'healthy', label: 'Healthy' },
];
const SORTS = [
  { value: 'health', label: 'Lowest health' },
  { value: 'churn', label: 'Highest churn risk' },
  { value: 'mrr', label: 'Highest MRR' },
];
const COMPONENTS = [
  ['usage', 'Product usage'],
  ['engagement', 'Engagement'],
  ['support', 'Support'],
  ['financial', 'Financial'],
  ['relationship', 'Relationship'],
];
const FEATURES = {
  logins_28d: 'Logins (28 days)',
  logins_change_pct: 'Login trend',
  days_since_last_login: 'Days since last login',
  features_28d: 'Features used (28 days)',
  api_calls_28d: 'API calls (28 days)',
  tenure_days: 'Tenure (days)',
  mrr: 'MRR',
};

const featureLabel = (f) => FEATURES[f] || label(f);

function churnCell(p) {
  if (p === null || p === undefined) return h('span', { class: 'muted', title: 'No churn model yet (run crm batch churn)' }, DASH);
  const tone = p >= 0.5 ? 'lo' : p >= 0.2 ? 'mid' : 'hi';
  return h('span', { class: `churn churn-${tone}`, dataset: { churn: p } }, pct(p));
}

function topDriver(drivers) {
  const d = (drivers || []).slice().sort((a, b) => b.contribution - a.contribution)[0];
  if (!d) return h('span', { class: 'muted' }, DASH);
  return h('span', { title: `contribution to log-odds ${signed(d.contribution)}` }, `${featureLabel(d.feature)}: ${dec(d.value)}`);
}

function dashboardTiles(d) {
  const reasons = new Map((d.not_available || []).map((n) => [n.field, n.reason]));
  const tile = (key, title, format, opts = {}) => {
    const value = d[key];
    const missing = value === null || value === undefined;
    return kpi(key, title, missing ? DASH : format(value), { note: missing ? reasons.get(key) || 'Not available' : opts.note, sub: opts.sub });
  };
  return [
    tile('total_accounts', 'Accounts', num),
    tile('avg_health_score', 'Avg. health score', dec),
    tile('critical_accounts', 'Critical', num),
    tile('at_risk_accounts', 'At risk', num),
    tile('total_mrr', 'Total MRR', money),
    tile('at_risk_mrr', 'MRR at risk', money, { note: 'MRR of accounts not healthy' }),
    tile('avg_change_7d', 'Avg. 7-day change', (v) => signed(v)),
    tile('declining_accounts', 'Declining (7 d)', num),
    tile('avg_churn_risk', 'Avg. churn risk (90 d)', (v) => pct(v), { sub: d.accounts_with_churn_risk ? `${num(d.accounts_with_churn_risk)} accounts scored` : null }),
    tile('expected_churn_mrr', 'Expected churned MRR', money, { note: 'Σ churn probability × MRR' }),
    tile('intervention_success_rate', 'Intervention success', (v) => pct(v), { sub: `${num(d.interventions_judged ?? 0)} judged` }),
  ];
}

function tasksTable(tasks, ctx, { withAccount = true } = {}) {
  const columns = [
    { title: 'Task', cell: (t) => h('div', h('strong', t.title), h('div', { class: 'muted small' }, t.reason)) },
    withAccount ? { title: 'Account', cell: (t) => h('a', { href: `#/accounts/${seg(t.account_id)}` }, t.account_id) } : null,
    { title: 'Playbook', cell: (t) => label(t.rule) },
    { title: 'Priority', cell: (t) => badge(label(t.priority), `prio-${String(t.priority).replace(/[^a-z]/g, '')}`) },
    { title: 'Due', cell: (t) => day(t.due), className: 'nowrap' },
    { title: 'Owner', cell: (t) => t.owner || h('span', { class: 'muted' }, 'Unassigned') },
    { title: 'Status', cell: (t) => label(t.status) },
  ].filter(Boolean);
  return table(columns, tasks).el;
}

export async function renderAccounts(ctx) {
  const { el, site, signal } = ctx;
  const risk = RISKS.some((r) => r.value === ctx.query.get('risk')) ? ctx.query.get('risk') || '' : '';
  const sort = SORTS.some((s) => s.value === ctx.query.get('sort')) ? ctx.query.get('sort') : 'health';
  const link = (next) => {
    const q = new URLSearchParams({ risk, sort, ...next });
    for (const [k, v] of [...q]) if (!v) q.delete(k);
    return `#/accounts?${q}`;
  };
  const tiles = h('div', { class: 'kpis wide', id: 'health-kpis' }, loading('Loading the executive dashboard…'));
  const listBody = h('div', loading('Loading accounts…'));
  const tasksBody = h('div', loading('Loading tasks…'));
  replace(
    el,
    tiles,
    panel('Customer health', listBody, {
      id: 'health-panel',
      subtitle: 'Latest health run; churn probability over the next 90 days',
      actions: [segmented(RISKS, risk, (value) => ctx.go(link({ risk: value })), 'Risk'), segmented(SORTS, sort, (value) => ctx.go(link({ sort: value })), 'Sort accounts')],
    }),
    panel('Open tasks', tasksBody, { id: 'tasks-panel', subtitle: 'Follow-ups created by the health playbooks' }),
  );

  const loadDashboard = async () => {
    try {
      const { data } = await get('/api/v1/health/dashboard', { site_id: site }, signal);
      if (!signal.aborted) replace(tiles, dashboardTiles(data || {}));
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(tiles, errorBox(err, () => loadDashboard()));
    }
  };
  const loadList = async () => {
    try {
      const { data } = await get('/api/v1/health', { site_id: site, risk }, signal);
      if (signal.aborted) return;
      const rows = (data || []).slice();
      if (sort === 'churn') rows.sort((a, b) => (b.churn_probability ?? -1) - (a.churn_probability ?? -1));
      if (sort === 'mrr') rows.sort((a, b) => (b.mrr ?? -1) - (a.mrr ?? -1));
      if (!rows.length) {
        replace(listBody, risk ? empty(`No ${label(risk).toLowerCase()} accounts`) : empty('No health scores yet', 'Import accounts, invoices and tickets, then run crm batch health (or try crm demo accounts).'));
        return;
      }
      const columns = [
        { title: 'Account', cell: (a) => h('div', { class: 'who' }, h('a', { href: `#/accounts/${seg(a.account_id)}`, class: 'who-name' }, a.name || a.account_id), h('div', { class: 'muted small' }, a.account_id)) },
        { title: 'Health', cell: (a) => scoreBar(a.score, { scale: 'health' }), className: 'w-score' },
        { title: 'Risk', cell: (a) => riskBadge(a.risk) },
        { title: 'Churn risk', cell: (a) => churnCell(a.churn_probability), className: 'num' },
        { title: 'Top churn driver', cell: (a) => topDriver(a.churn_drivers) },
        { title: 'MRR', cell: (a) => money(a.mrr), className: 'num' },
        { title: '7-day change', cell: (a) => h('span', { class: a.change_7d < 0 ? 'down' : a.change_7d > 0 ? 'up' : '' }, signed(a.change_7d)), className: 'num' },
      ];
      replace(listBody, table(columns, rows, { onRow: (a) => ctx.go(`#/accounts/${seg(a.account_id)}`), rowLabel: (a) => `Account ${a.name || a.account_id}` }).el);
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(listBody, errorBox(err, () => loadList()));
    }
  };
  const loadTasks = async () => {
    try {
      const { data } = await get('/api/v1/tasks', { site_id: site, status: 'open' }, signal);
      if (signal.aborted) return;
      replace(tasksBody, data?.length ? tasksTable(data, ctx) : empty('No open tasks', 'Playbooks create tasks for high-risk, declining and expansion accounts.'));
    } catch (err) {
      if (!signal.aborted && err?.name !== 'AbortError') replace(tasksBody, errorBox(err, () => loadTasks()));
    }
  };
  await Promise.all([loadDashboard(), loadList(), loadTasks()]);
}

function inputsPanel(inputs) {
  if (!inputs || typeof inputs !== 'object') return null;
  const groups = Object.entries(inputs).filter(([, v]) => v && typeof v === 'object');
  if (!groups.length) return null;
  const show = (v) => (typeof v === 'boolean' ? (v ? 'yes' : 'no') : typeof v === 'number' ? dec(v) : v === null ? DASH : String(v));
  return panel(
    'Inputs',
    h('div', { class: 'grid cols-2 tight' }, groups.map(([group, values]) => h('div', h('h3', label(group)), facts(Object.entries(values).map(([k, v]) => [label(k), show(v)]))))),
    { id: 'account-inputs' },
  );
}

export async function renderAccount(ctx) {
  const { el, site, signal } = ctx;
  const id = ctx.params[0];
  replace(el, loading('Loading account…'));
  let a;
  try {
    a = (await get(`/api/v1/accounts/${seg(id)}/health`, { site_id: site }, signal)).data;
  } catch (err) {
    if (signal.aborted) return;
    if (err.status === 404) {
      replace(el, h('a', { href: '#/accounts', class: 'back' }, '← Accounts'), empty('No health score for this account', err.message));
      return;
    }
    throw err;
  }
  if (signal.aborted) return;
  ctx.setTitle(`Account · ${a.name || a.account_id}`);
  const missing = new Set(a.missing || []);
  const history = (a.history || []).slice().sort((x, y) => Date.parse(x.day) - Date.parse(y.day));
  const drivers = (a.churn_drivers || []).slice().sort((x, y) => y.contribution - x.contribution);
  const maxContribution = Math.max(0.001, ...drivers.map((d) => Math.abs(d.contribution)));
  const tasksBody = h('div', loading('Loading tasks…'));

  replace(
    el,
    h('a', { href: '#/accounts', class: 'back' }, '← Accounts'),
    h(
      'div',
      { class: 'detail-head' },
      h('div', h('h2', { class: 'detail-name' }, a.name || a.account_id), h('div', { class: 'muted small' }, a.account_id), h('div', { class: 'chips' }, riskBadge(a.risk))),
      h(
        'div',
        { class: 'head-scores' },
        h('div', { id: 'account-score' }, h('div', { class: 'muted small' }, 'Health score'), scoreBar(a.score, { scale: 'health' })),
        h('div', { id: 'account-churn' }, h('div', { class: 'muted small' }, 'Churn risk (90 d)'), churnCell(a.churn_probability)),
        h('div', h('div', { class: 'muted small' }, 'MRR'), h('strong', money(a.mrr))),
      ),
    ),
    h(
      'div',
      { class: 'grid cols-2' },
      panel(
        'Health components',
        h(
          'div',
          meters(COMPONENTS.map(([key, text]) => ({ label: text, value: missing.has(key) ? null : a[key], note: missing.has(key) ? 'No data: its weight went to the other components' : undefined })), { name: 'components' }),
          facts([
            ['7-day change', signed(a.change_7d)],
            ['30-day change', signed(a.change_30d)],
            ['Why it moved', a.change_reason],
            ['Computed', dateTime(a.computed_at)],
          ]),
        ),
        { id: 'account-components' },
      ),
      panel(
        'Churn drivers',
        drivers.length
          ? h(
              'ul',
              { class: 'drivers', id: 'churn-drivers' },
              drivers.map((d) =>
                h(
                  'li',
                  { title: `value ${dec(d.value)}, contribution to log-odds ${signed(d.contribution)}` },
                  h('span', { class: 'driver-label' }, featureLabel(d.feature), h('span', { class: 'muted small' }, ` = ${dec(d.value)}`)),
                  h('span', { class: 'driver-track' }, h('span', { class: `driver-fill ${d.contribution >= 0 ? 'toward' : 'away'}`, style: { width: `${((Math.abs(d.contribution) / maxContribution) * 100).toFixed(1)}%` } })),
                  h('span', { class: 'driver-value' }, signed(d.contribution)),
                ),
              ),
            )
          : empty('No churn drivers', a.churn_probability === null || a.churn_probability === undefined ? 'No churn model yet: run crm batch churn.' : 'Nothing pushes this account towards churn.'),
        { id: 'account-drivers', subtitle: 'What pushes the churn probability up (+) or down (−)' },
      ),
    ),
    panel(
      'Health score history',
      history.length
        ? lineChart(history.map((p) => ({ x: p.day, values: { score: p.score } })), [{ key: 'score', label: 'Health score', tone: 'a' }], { xLabel: axisDay, yMax: 100, height: 200, name: 'health-history', yFormat: (v) => num(v) })
        : empty('No history yet'),
      { id: 'account-history', subtitle: history.length === 1 ? 'One run so far: the line grows with each daily health run' : `Last ${history.length} runs` },
    ),
    inputsPanel(a.inputs),
    panel('Tasks', tasksBody, { id: 'account-tasks' }),
  );

  try {
    const { data } = await get('/api/v1/tasks', { site_id: site, account_id: a.account_id }, signal);
    if (!signal.aborted) replace(tasksBody, data?.length ? tasksTable(data, ctx, { withAccount: false }) : empty('No tasks for this account'));
  } catch (err) {
    if (!signal.aborted && err?.name !== 'AbortError') replace(tasksBody, errorBox(err));
  }
}
