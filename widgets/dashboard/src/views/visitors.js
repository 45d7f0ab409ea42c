// The visitors screens: the ranked list (intent, engagement or recency; cursor-paginated) with
// scores and buying signals, and one visitor's profile, last session and event timeline, with the
// privacy actions (export, erase: ../privacy.js) for the roles that hold them.

import { get } from '../api.js';
import { meters } from '../charts.js';
import { h, replace, seg } from '../dom.js';
import { DASH, ago, dateTime, duration, num, shortId } from '../format.js';
import { erasedNotice, privacyActions } from '../privacy.js';
import { deviceText, timeline } from '../timeline.js';
import { chip, empty, errorBox, facts, loading, panel, paged, personName, scoreBar, segmented, table } from '../ui.js';

const SORTS = [
  { value: 'intent', label: 'Intent' },
  { value: 'engagement', label: 'Engagement' },
  { value: 'last_seen', label: 'Last seen' },
];

export function signalChips(signals) {
  const entries = Object.entries(signals || {}).sort((a, b) => b[1] - a[1]);
  if (!entries.length) return h('span', { class: 'muted' }, DASH);
  return h('span', { class: 'chips' }, entries.slice(0, 4).map(([name, count]) => chip(count > 1 ? `${name} ×${count}` : name, `${name}: ${count}`)));
}

function source(v) {
  return v.first_utm?.source || v.first_referrer || '(direct)';
}

function visitorName(v) {
  return personName(v.traits, null);
}

export async function renderVisitors(ctx) {
  const { el, site, signal } = ctx;
  const sort = SORTS.some((s) => s.value === ctx.query.get('sort')) ? ctx.query.get('sort') : 'intent';
  const body = h('div', loading('Loading visitors…'));
  replace(
    el,
    erasedNotice('visitors'),
    h('div', { class: 'toolbar' }, h('p', { class: 'muted' }, 'People on your site, ranked by buying intent. Bots are excluded.'), segmented(SORTS, sort, (value) => ctx.go(`#/visitors?sort=${value}`), 'Sort visitors')),
    panel(null, body, { id: 'visitors-panel' }),
  );
  const columns = [
    {
      title: 'Visitor',
      cell: (v) => {
        const name = visitorName(v);
        return h('div', { class: 'who' }, h('a', { href: `#/visitors/${seg(v.visitor_id)}`, class: 'who-name', title: v.visitor_id }, name || shortId(v.visitor_id)), h('div', { class: 'muted small' }, v.traits?.company || deviceText(v.device)));
      },
    },
    { title: 'Intent', cell: (v) => scoreBar(v.scores?.intent), className: 'w-score' },
    { title: 'Engagement', cell: (v) => scoreBar(v.scores?.engagement), className: 'w-score' },
    { title: 'Signals', cell: (v) => signalChips(v.intent_signals) },
    { title: 'Visits', cell: (v) => num(v.visits), className: 'num' },
    { title: 'Pageviews', cell: (v) => num(v.pageviews), className: 'num' },
    { title: 'Source', cell: (v) => h('span', { class: 'ellipsis', title: source(v) }, source(v)) },
    { title: 'Last seen', cell: (v) => h('span', { title: dateTime(v.last_seen) }, ago(v.last_seen)), className: 'nowrap' },
  ];
  let tbl = null;
  await paged(
    body,
    (cursor) => get('/api/v1/visitors', { site_id: site, sort, limit: 50, cursor }, signal),
    (items, first) => {
      if (first) {
        if (!items.length) {
          replace(body, empty('No visitors yet', 'Add the tracking tag to your website: <script async src="…/widgets/tracking.js" data-site="…">.'));
          return;
        }
        tbl = table(columns, items, { onRow: (v) => ctx.go(`#/visitors/${seg(v.visitor_id)}`), rowLabel: (v) => `Visitor ${visitorName(v) || v.visitor_id}` });
        replace(body, tbl.el);
      } else {
        tbl.add(items);
      }
    },
    { signal },
  ).catch((err) => {
    if (!signal.aborted) replace(body, errorBox(err, () => renderVisitors(ctx)));
  });
}

function utmText(utm) {
  if (!utm) return null;
  const parts = ['source', 'medium', 'campaign', 'term', 'content'].filter((k) => utm[k]).map((k) => `${k}=${utm[k]}`);
  return parts.length ? parts.join(' · ') : null;
}

function geoText(geo) {
  if (!geo) return null;
  return [geo.city, geo.region, geo.country].filter(Boolean).join(', ') || null;
}

export async function renderVisitor(ctx) {
  const { el, site, signal } = ctx;
  const id = ctx.params[0];
  replace(el, loading('Loading visitor…'));
  let v;
  try {
    v = (await get(`/api/v1/visitors/${seg(id)}`, { site_id: site }, signal)).data;
  } catch (err) {
    if (signal.aborted) return;
    if (err.status === 404) {
      replace(el, h('a', { href: '#/visitors', class: 'back' }, '← Visitors'), empty('Visitor not found', `No visitor ${id} on site ${site}.`));
      return;
    }
    throw err;
  }
  if (signal.aborted) return;
  const name = visitorName(v);
  ctx.setTitle(name ? `Visitor · ${name}` : 'Visitor');
  const session = v.last_session;
  const tl = timeline();
  const tlBody = h('div', tl.el);
  const traits = Object.entries(v.traits || {});
  // An identified visitor is erased through its lead: the server says so (409) with the lead.
  const privacy = privacyActions(ctx, { kind: 'visitor', id: v.visitor_id ?? id, name: name || `visitor ${v.visitor_id ?? id}`, confirm: v.visitor_id ?? id, confirmLabel: 'visitor id', list: 'visitors' });
  replace(
    el,
    h('a', { href: '#/visitors', class: 'back' }, '← Visitors'),
    h(
      'div',
      { class: 'detail-head' },
      h('div', h('h2', { class: 'detail-name' }, name || v.visitor_id), h('div', { class: 'muted small' }, v.visitor_id), v.is_bot ? chip('bot') : null),
      h('div', { class: 'head-scores' }, h('div', h('div', { class: 'muted small' }, 'Intent'), scoreBar(v.scores?.intent)), h('div', h('div', { class: 'muted small' }, 'Engagement'), scoreBar(v.scores?.engagement))),
    ),
    privacy,
    h(
      'div',
      { class: 'grid cols-2' },
      panel(
        'Profile',
        facts([
          ['First seen', dateTime(v.first_seen)],
          ['Last seen', `${dateTime(v.last_seen)} (${ago(v.last_seen)})`],
          ['Visits', num(v.visits)],
          ['Pageviews', num(v.pageviews)],
          ['Time on site', duration(v.time_spent_ms)],
          ['Device', `${deviceText(v.device)}${v.device?.category ? ` · ${v.device.category}` : ''}`],
          ['Location', geoText(v.geo) || (v.geo?.org ? null : DASH)],
          v.geo?.org ? ['Organisation', v.geo.org] : null,
          ['First referrer', v.first_referrer || '(direct)'],
          ['Landing page', v.landing_page],
          ['First UTM', utmText(v.first_utm)],
          ['Last UTM', utmText(v.last_utm)],
          ...traits.map(([k, val]) => [`Trait: ${k}`, String(val)]),
        ]),
        { id: 'visitor-profile' },
      ),
      h(
        'div',
        { class: 'stack' },
        panel('Buying signals', signalChips(v.intent_signals), { id: 'visitor-signals' }),
        panel(
          'Scores',
          meters(
            [
              { label: 'Intent', value: v.scores?.intent },
              { label: 'Engagement', value: v.scores?.engagement },
            ],
            { scale: 'heat' },
          ),
        ),
        session
          ? panel(
              'Last session',
              facts([
                ['Started', dateTime(session.started_at)],
                ['Length', duration(Date.parse(session.ended_at) - Date.parse(session.started_at))],
                ['Pageviews', num(session.pageviews)],
                ['Engaged', duration(session.engaged_ms)],
                ['Max scroll', `${num(session.max_scroll)}%`],
                ['Landing page', session.landing_page],
                ['Referrer', session.referrer_host || '(direct)'],
                ['Signals', (session.signals || []).length ? h('span', { class: 'chips' }, session.signals.map((s) => chip(s))) : null],
              ]),
            )
          : null,
      ),
    ),
    panel('Timeline', tlBody, { id: 'visitor-timeline', subtitle: 'Newest first' }),
  );
  await paged(
    tlBody,
    (cursor) => get(`/api/v1/visitors/${seg(id)}/events`, { site_id: site, limit: 100, cursor }, signal),
    (items, first) => {
      if (first && !items.length) replace(tlBody, empty('No events'));
      else tl.add(items);
    },
    { signal },
  ).catch((err) => {
    if (!signal.aborted) replace(tlBody, errorBox(err));
  });
}
