// The leads screens: the list (by score, activity or creation; status filter; cursor pages) with
// score, status, owner, company and top reasons, and one lead's score breakdown, reasons, score
// history, CRM fields, devices and multi-device timeline, with the privacy actions (export,
// erase: ../privacy.js) for the roles that hold them.

import { get } from '../api.js';
import { lineChart, meters } from '../charts.js';
import { h, replace, seg } from '../dom.js';
import { DASH, ago, axisDay, dateTime, duration, label, num, shortId } from '../format.js';
import { deviceText, timeline } from '../timeline.js';
import { erasedNotice, privacyActions } from '../privacy.js';
import { badge, empty, errorBox, facts, loading, panel, paged, scoreBar, segmented, table } from '../ui.js';
import { signalChips } from './visitors.js';

const SORTS = [
  { value: 'score', label: 'Score' },
  { value: 'last_activity', label: 'Last activity' },
  { value: 'created', label: 'Newest' },
];
const STATUSES = ['new', 'working', 'qualified', 'unqualified', 'customer', 'lost'];

function statusBadge(status) {
  return badge(label(status || 'new'), `status-${String(status || 'new').replace(/[^a-z]/g, '')}`);
}

function leadName(lead) {
  return lead.name || lead.email || lead.lead_id;
}

export async function renderLeads(ctx) {
  const { el, site, signal } = ctx;
  const sort = SORTS.some((s) => s.value === ctx.query.get('sort')) ? ctx.query.get('sort') : 'score';
  const status = STATUSES.includes(ctx.query.get('status')) ? ctx.query.get('status') : '';
  const link = (next) => {
    const q = new URLSearchParams({ sort, ...(status ? { status } : {}), ...next });
    for (const [k, v] of [...q]) if (!v) q.delete(k);
    return `#/leads?${q}`;
  };
  const statusSelect = h(
    'select',
    { id: 'lead-status', 'aria-label': 'Status' },
    h('option', { value: '' }, 'All statuses'),
    STATUSES.map((s) => h('option', { value: s, selected: s === status }, label(s))),
  );
  statusSelect.addEventListener('change', () => ctx.go(link({ status: statusSelect.value })));
  const body = h('div', loading('Loading leads…'));
  replace(
    el,
    erasedNotice('leads'),
    h('div', { class: 'toolbar' }, h('p', { class: 'muted' }, 'Identified people with all their devices’ history, scored 0–100.'), h('div', { class: 'toolbar-controls' }, statusSelect, segmented(SORTS, sort, (value) => ctx.go(link({ sort: value })), 'Sort leads'))),
    panel(null, body, { id: 'leads-panel' }),
  );
  const columns = [
    {
      title: 'Lead',
      cell: (l) => h('div', { class: 'who' }, h('a', { href: `#/leads/${seg(l.lead_id)}`, class: 'who-name' }, leadName(l)), h('div', { class: 'muted small' }, l.email && l.email !== leadName(l) ? l.email : '')),
    },
    { title: 'Company', cell: (l) => l.company || DASH },
    { title: 'Score', cell: (l) => scoreBar(l.score), className: 'w-score' },
    { title: 'Status', cell: (l) => statusBadge(l.status) },
    { title: 'Owner', cell: (l) => l.owner || h('span', { class: 'muted' }, 'Unassigned') },
    {
      title: 'Top reasons',
      cell: (l) => {
        const reasons = (l.score_reasons || []).slice(0, 2);
        return reasons.length ? h('ul', { class: 'reasons compact' }, reasons.map((r) => h('li', r))) : h('span', { class: 'muted' }, DASH);
      },
    },
    { title: 'Source', cell: (l) => l.source || DASH },
    { title: 'Last activity', cell: (l) => h('span', { title: dateTime(l.last_activity) }, ago(l.last_activity)), className: 'nowrap' },
  ];
  let tbl = null;
  await paged(
    body,
    (cursor) => get('/api/v1/leads', { site_id: site, sort, status, limit: 50, cursor }, signal),
    (items, first) => {
      if (first) {
        if (!items.length) {
          replace(body, empty(status ? `No ${label(status).toLowerCase()} leads` : 'No leads yet', 'Leads appear when visitors identify themselves or submit a lead form.'));
          return;
        }
        tbl = table(columns, items, { onRow: (l) => ctx.go(`#/leads/${seg(l.lead_id)}`), rowLabel: (l) => `Lead ${leadName(l)}` });
        replace(body, tbl.el);
      } else {
        tbl.add(items);
      }
    },
    { signal },
  ).catch((err) => {
    if (!signal.aborted) replace(body, errorBox(err, () => renderLeads(ctx)));
  });
}

const FACTORS = [
  ['fit', 'Company fit'],
  ['intent', 'Intent'],
  ['engagement', 'Engagement'],
  ['behavioural', 'Behaviour'],
  ['timing', 'Timing'],
];

function insightPanel(insight) {
  if (!insight) return null;
  const list = (items) => (Array.isArray(items) && items.length ? h('ul', { class: 'reasons' }, items.map((i) => h('li', String(i)))) : h('span', { class: 'muted' }, DASH));
  return panel(
    'AI insight',
    facts([
      ['Score', num(insight.score)],
      ['Key factors', list(insight.key_factors)],
      ['Next actions', list(insight.next_actions)],
      ['Objections', list(insight.objections)],
      ['Generated', `${dateTime(insight.generated_at)}${insight.model ? ` · ${insight.model}` : ''}`],
    ]),
    { id: 'lead-insight' },
  );
}

export async function renderLead(ctx) {
  const { el, site, signal } = ctx;
  const id = ctx.params[0];
  replace(el, loading('Loading lead…'));
  let lead;
  try {
    lead = (await get(`/api/v1/leads/${seg(id)}`, { site_id: site }, signal)).data;
  } catch (err) {
    if (signal.aborted) return;
    if (err.status === 404) {
      replace(el, h('a', { href: '#/leads', class: 'back' }, '← Leads'), empty('Lead not found', `No lead ${id} on site ${site}.`));
      return;
    }
    throw err;
  }
  if (signal.aborted) return;
  ctx.setTitle(`Lead · ${leadName(lead)}`);

  // Devices: one entry per visitor id, labelled once their first event shows the browser.
  const visitorIds = Array.isArray(lead.visitor_ids) ? lead.visitor_ids : [];
  const devices = new Map(visitorIds.map((vid, index) => [vid, { index, label: shortId(vid) }]));
  const deviceList = h(
    'ul',
    { class: 'device-list' },
    visitorIds.map((vid, index) => h('li', { class: `dev-${index % 6}` }, h('a', { href: `#/visitors/${seg(vid)}`, title: vid }, `Device ${index + 1}`), h('span', { class: 'muted small', dataset: { device: vid } }, shortId(vid, 20)))),
  );
  const history = (lead.score_history || []).slice().sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
  const tl = timeline({ devices: visitorIds.length > 1 ? devices : null });
  const tlBody = h('div', tl.el);
  const activity = lead.activity || {};
  const breakdown = lead.score_breakdown || {};
  const privacy = privacyActions(ctx, {
    kind: 'lead',
    id: lead.lead_id ?? id,
    name: leadName(lead),
    confirm: lead.email || lead.lead_id || id,
    confirmLabel: lead.email ? 'lead\'s email' : 'lead id',
    list: 'leads',
  });

  replace(
    el,
    h('a', { href: '#/leads', class: 'back' }, '← Leads'),
    h(
      'div',
      { class: 'detail-head' },
      h('div', h('h2', { class: 'detail-name' }, leadName(lead)), h('div', { class: 'muted' }, [lead.email, lead.company].filter(Boolean).join(' · ')), h('div', { class: 'chips' }, statusBadge(lead.status), lead.merged_into ? badge(`merged into ${lead.merged_into}`) : null, lead.deleted_at ? badge('deleted', 'risk-critical') : null)),
      h('div', { class: 'big-score', id: 'lead-score' }, h('div', { class: 'muted small' }, 'Lead score'), scoreBar(lead.score)),
    ),
    privacy,
    h(
      'div',
      { class: 'grid cols-2' },
      panel(
        'Score breakdown',
        h(
          'div',
          meters(FACTORS.filter(([key]) => key in breakdown).map(([key, text]) => ({ label: text, value: breakdown[key] })), { name: 'breakdown', scale: 'heat' }),
          (lead.score_reasons || []).length ? h('div', h('h3', 'Why this score'), h('ul', { class: 'reasons', id: 'lead-reasons' }, lead.score_reasons.map((r) => h('li', r)))) : null,
        ),
        { id: 'lead-breakdown' },
      ),
      h(
        'div',
        { class: 'stack' },
        panel(
          'CRM',
          facts([
            ['Status', statusBadge(lead.status)],
            ['Owner', lead.owner || 'Unassigned'],
            ['Source', lead.source],
            ['Outcome', lead.outcome ? `${label(lead.outcome.outcome)} (score ${num(lead.outcome.score)} by ${lead.outcome.by})` : null],
            ['Notes', lead.notes ? h('div', { class: 'notes' }, lead.notes) : null],
            ['First seen', dateTime(lead.first_seen)],
            ['Created', dateTime(lead.created_at)],
            ['Last activity', `${dateTime(lead.last_activity)} (${ago(lead.last_activity)})`],
          ]),
          { id: 'lead-crm' },
        ),
        panel(
          'Activity',
          facts([
            ['Visits', num(activity.visits)],
            ['Pageviews', num(activity.pageviews)],
            ['Engaged', duration(activity.engaged_ms)],
            ['Active days', num((activity.active_days || []).length)],
            ['Signals', signalChips(activity.signals)],
            ['First UTM', lead.first_utm && Object.keys(lead.first_utm).length ? Object.entries(lead.first_utm).map(([k, v]) => `${k}=${v}`).join(' · ') : null],
          ]),
        ),
      ),
    ),
    history.length > 1
      ? panel('Score history', lineChart(history.map((p) => ({ x: p.at, values: { score: p.score } })), [{ key: 'score', label: 'Score', tone: 'a' }], { xLabel: axisDay, tipLabel: dateTime, yMax: 100, height: 180, name: 'score-history' }), { id: 'lead-history' })
      : null,
    insightPanel(lead.ai_insight),
    panel(visitorIds.length > 1 ? `Devices (${visitorIds.length})` : 'Device', deviceList, { id: 'lead-devices' }),
    panel('Timeline', tlBody, { id: 'lead-timeline', subtitle: visitorIds.length > 1 ? 'All devices, newest first' : 'Newest first' }),
  );

  const labelled = new Set();
  await paged(
    tlBody,
    (cursor) => get(`/api/v1/leads/${seg(id)}/timeline`, { site_id: site, limit: 100, cursor }, signal),
    (items, first) => {
      for (const event of items) {
        const device = devices.get(event.visitor_id);
        if (device && !labelled.has(event.visitor_id) && event.device?.browser) {
          labelled.add(event.visitor_id);
          device.label = deviceText(event.device);
          const span = deviceList.querySelectorAll('[data-device]')[device.index];
          if (span) span.textContent = `${device.label} · ${shortId(event.visitor_id, 20)}`;
        }
      }
      if (first && !items.length) replace(tlBody, empty('No events yet', 'A lead created by hand has no history until one of its visitors identifies.'));
      else tl.add(items);
    },
    { signal },
  ).catch((err) => {
    if (!signal.aborted) replace(tlBody, errorBox(err));
  });
}
