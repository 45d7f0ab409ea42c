// The overview screen: live visitors (polled every 15 s while visible) and today's traffic, the
// date range selector (7/30/90 days, custom), the filter bar (filters and the compare toggle, in
// the route: ?filter=dimension:op:value&compare=previous; they narrow every panel), KPI tiles
// with the change against the previous period (with compare on, also the previous figures),
// visitors & sessions over time, the top lists (pages, referrers, countries, devices, browsers,
// UTM sources: a row adds a filter, "exclude" its negation) and the goals' conversions (not
// filtered: with filters the panel says so). Panels whose endpoint is missing (404) are hidden.

import { get } from '../api.js';
import { barList, lineChart, sparkline } from '../charts.js';
import { h, replace } from '../dom.js';
import { DASH, axisDay, axisHour, compact, dateTime, duration, isoDay, label, num, pct, time } from '../format.js';
import { empty, errorBox, kpi, loading, panel, segmented } from '../ui.js';
import { LIST_DIMENSIONS, compareLine, filterBar, makeFilter, overviewQuery, readCompare, readFilters, withFilter } from '../filters.js';

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
const LIVE_POLL_MS = 15_000;
const TODAY_POLL_MS = 60_000;

const PRESETS = [
  { value: '7', label: '7 days' },
  { value: '30', label: '30 days' },
  { value: '90', label: '90 days' },
  { value: 'custom', label: 'Custom' },
];

function utcMidnight(ms) {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

/** The range from the route's query: ?range=7|30|90 or ?from=YYYY-MM-DD&to=YYYY-MM-DD (inclusive). */
export function readRange(query, now = Date.now()) {
  const today = utcMidnight(now);
  const dayRe = /^\d{4}-\d{2}-\d{2}$/;
  const from = query.get('from');
  const to = query.get('to');
  if (from && to && dayRe.test(from) && dayRe.test(to)) {
    const fromMs = Date.parse(`${from}T00:00:00Z`);
    const toMs = Date.parse(`${to}T00:00:00Z`) + DAY_MS;
    if (Number.isFinite(fromMs) && Number.isFinite(toMs) && toMs > fromMs && toMs - fromMs <= 366 * DAY_MS) {
      return { key: 'custom', fromMs, toMs, days: Math.round((toMs - fromMs) / DAY_MS), text: `${from} – ${to}` };
    }
  }
  const days = ['7', '30', '90'].includes(query.get('range')) ? Number(query.get('range')) : 7;
  return { key: String(days), fromMs: today - (days - 1) * DAY_MS, toMs: today + DAY_MS, days, text: `Last ${days} days` };
}

const day = (ms) => isoDay(new Date(ms));

/** The route parameters of a range: { range } or { from, to } (inclusive UTC days). */
const rangeParams = (range) => (range.key === 'custom' ? { from: day(range.fromMs), to: day(range.toMs - DAY_MS) } : { range: range.key });

/** Hour axis: the day's name at midnight, the hour otherwise. */
const hourTick = (x) => (Date.parse(x) % DAY_MS === 0 ? axisDay(x) : axisHour(x));

/**
 * The date range selector: presets and a custom from/to form. `navigate(params)` gets
 * { range } or { from, to } (inclusive UTC days) and goes to the route that shows it.
 */
export function rangeBar(range, navigate) {
  const fromInput = h('input', { type: 'date', id: 'range-from', value: day(range.fromMs), 'aria-label': 'From' });
  const toInput = h('input', { type: 'date', id: 'range-to', value: day(range.toMs - DAY_MS), 'aria-label': 'To' });
  const custom = h(
    'form',
    { class: `custom-range${range.key === 'custom' ? '' : ' hidden'}` },
    fromInput,
    h('span', { class: 'muted' }, '→'),
    toInput,
    h('button', { class: 'btn small', type: 'submit' }, 'Apply'),
  );
  custom.addEventListener('submit', (event) => {
    event.preventDefault();
    if (fromInput.value && toInput.value) navigate({ from: fromInput.value, to: toInput.value });
  });
  const seg = segmented(PRESETS, range.key, (value) => {
    if (value !== 'custom') {
      navigate({ range: value });
      return;
    }
    custom.classList.remove('hidden');
    for (const button of seg.querySelectorAll('button')) {
      button.classList.toggle('active', button.dataset.value === 'custom');
      button.setAttribute('aria-pressed', String(button.dataset.value === 'custom'));
    }
    fromInput.focus();
  }, 'Date range');
  return h('div', { class: 'range-bar' }, h('div', { class: 'range-title' }, h('strong', range.text), h('span', { class: 'muted small' }, ' · days in UTC')), h('div', { class: 'range-controls' }, seg, custom));
}

/** Fills missing buckets with zeros when the points align on the expected grid. */
function fillBuckets(allPoints, fromMs, toMs, stepMs) {
  const points = allPoints.filter((p) => Date.parse(p.start) < toMs);
  const byStart = new Map(points.map((p) => [Date.parse(p.start), p]));
  const expected = [];
  for (let t = fromMs; t < toMs && expected.length < 2000; t += stepMs) expected.push(t);
  const expectedSet = new Set(expected);
  if (![...byStart.keys()].every((t) => expectedSet.has(t))) return points.slice().sort((a, b) => Date.parse(a.start) - Date.parse(b.start));
  return expected.map((t) => byStart.get(t) || { start: new Date(t).toISOString(), visitors: 0, sessions: 0, pageviews: 0 });
}

function change(current, previous, higherIsBetter = true) {
  if (!Number.isFinite(current) || !Number.isFinite(previous) || previous === 0) return null;
  const ratio = (current - previous) / previous;
  if (Math.abs(ratio) < 0.0005) return { text: '0% vs previous period', good: null };
  const sign = ratio > 0 ? '+' : '\u2212';
  return { text: `${sign}${Math.abs(ratio * 100).toFixed(Math.abs(ratio) < 0.1 ? 1 : 0)}% vs previous period`, good: ratio > 0 === higherIsBetter };
}

const regionNames = typeof Intl.DisplayNames === 'function' ? new Intl.DisplayNames(undefined, { type: 'region' }) : null;
function countryName(code) {
  if (typeof code === 'string' && /^[A-Z]{2}$/.test(code) && regionNames) {
    try {
      return `${regionNames.of(code)} (${code})`;
    } catch {
      return code;
    }
  }
  return code;
}

const DEVICES = { pc: 'Desktop', smartphone: 'Smartphone', tablet: 'Tablet', phablet: 'Phablet', console: 'Console', tv: 'TV', bot: 'Bot' };
const deviceName = (key) => DEVICES[String(key).toLowerCase()] || label(key);
const filterValue = (dimension, value) => (dimension === 'country' ? countryName(value) : dimension === 'device' ? deviceName(value) : value);

export async function renderOverview(ctx) {
  const { el, site, signal } = ctx;
  const range = readRange(ctx.query);
  const interval = range.days <= 2 ? 'hour' : 'day';
  const filters = readFilters(ctx.query);
  const compare = readCompare(ctx.query);
  // Every request of the screen carries the filters (repeated `filter` parameters).
  const f = filters.length ? { filter: filters.map((x) => x.raw) } : {};
  const q = { site_id: site, from: day(range.fromMs), to: day(range.toMs), ...f };
  const show = (rangeQuery, nextFilters, nextCompare) => ctx.go(`#/overview?${overviewQuery(rangeQuery, nextFilters, nextCompare)}`);

  // A filter is added only when the server takes it: a refused one shows its message and stays
  // out of the route. Resolves to the message, or null once the route shows the new filters.
  const addFilter = async (added) => {
    const next = withFilter(filters, added);
    try {
      await get('/api/v1/analytics/overview', { ...q, filter: next.map((x) => x.raw), limit: 1 }, signal);
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return null;
      return err.message;
    }
    show(rangeParams(range), next, compare);
    return null;
  };
  const bar = filterBar({
    filters,
    compare,
    format: filterValue,
    onRemove: (index) => show(rangeParams(range), filters.filter((_, i) => i !== index), compare),
    onAdd: addFilter,
    onCompare: (on) => show(rangeParams(range), filters, on),
  });
  const filtered = filters.length ? ' · filtered' : '';

  const liveCard = h('div', { class: 'panel live-card', id: 'live-panel' }, loading('Live visitors…'));
  const todayCard = h('div', { class: 'panel today-card', id: 'today-panel' }, loading('Today…'));
  const kpis = h('div', { class: 'kpis', id: 'kpis' }, loading());
  const trendBody = h('div', loading());
  const trend = panel(interval === 'hour' ? 'Visitors & sessions per hour' : 'Visitors & sessions per day', trendBody, { id: 'traffic-panel', subtitle: range.text });
  const lists = [
    ['top_pages', 'Top pages', (k) => k],
    ['top_referrers', 'Referrers', (k) => k],
    ['utm_sources', 'UTM sources', (k) => k],
    ['countries', 'Countries', countryName],
    ['devices', 'Devices', deviceName],
    ['browsers', 'Browsers', (k) => k],
  ];
  const listBodies = Object.fromEntries(lists.map(([key]) => [key, h('div', loading())]));
  const grid = h('div', { class: 'grid cols-3' }, lists.map(([key, title]) => panel(title, listBodies[key], { id: `panel-${key}` })));
  const goalsBody = h('div');
  const goalsPanel = panel('Goals', goalsBody, { id: 'overview-goals', className: 'hidden', subtitle: 'Converting visitors and their share of the range\'s visitors' });

  replace(el, h('div', { class: 'top-strip' }, liveCard, todayCard), rangeBar(range, (params) => show(params, filters, compare)), bar.el, kpis, trend, grid, goalsPanel);

  // Live visitors, polled while the page is visible; hidden for good when the endpoint is absent.
  let liveTimer = null;
  let todayTimer = null;
  const loadLive = async () => {
    try {
      const { data } = await get('/api/v1/analytics/live', { site_id: site, ...f }, signal);
      if (signal.aborted) return;
      const pages = (data?.top_pages || []).slice(0, 5);
      replace(
        liveCard,
        h('div', { class: 'live-head' }, h('span', { class: 'pulse', 'aria-hidden': 'true' }), h('span', `Live · last ${num(data?.window_minutes ?? 5)} min${filtered}`)),
        h('div', { class: 'live-figures' }, h('div', { class: 'live-big', id: 'live-visitors' }, num(data?.visitors ?? 0)), h('div', { class: 'muted' }, 'visitors now', h('br'), `${num(data?.pageviews ?? 0)} pageviews`)),
        pages.length ? barList(pages, { name: 'live_pages' }) : h('p', { class: 'muted small' }, 'Nobody on the site right now.'),
        h('div', { class: 'muted small' }, `Updated ${time(data?.as_of || new Date().toISOString())}`),
      );
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      if (err?.status === 404) {
        liveCard.remove();
        clearInterval(liveTimer);
        liveTimer = null;
        return;
      }
      replace(liveCard, h('div', { class: 'live-head' }, 'Live'), h('p', { class: 'error-text' }, err.message));
    }
  };

  const loadToday = async () => {
    const now = Date.now();
    const from = utcMidnight(now);
    try {
      const [overview, hourly] = await Promise.all([
        get('/api/v1/analytics/overview', { site_id: site, from: day(from), to: day(from + DAY_MS), limit: 1, ...f }, signal),
        get('/api/v1/analytics/timeseries', { site_id: site, from: day(from), to: day(from + DAY_MS), interval: 'hour', ...f }, signal).catch((err) => {
          if (err?.status === 404) return null;
          throw err;
        }),
      ]);
      if (signal.aborted) return;
      const o = overview.data?.overview || {};
      const spark = hourly?.data?.points ? fillBuckets(hourly.data.points, from, Math.ceil((now + 1) / HOUR_MS) * HOUR_MS, HOUR_MS).map((p) => Number(p.visitors) || 0) : null;
      replace(
        todayCard,
        h('div', { class: 'live-head' }, h('span', `Today (UTC) · ${dateTime(new Date(now).toISOString())}${filtered}`)),
        h(
          'div',
          { class: 'today-figures' },
          h('div', { dataset: { today: 'visitors' } }, h('div', { class: 'today-num' }, num(o.visitors ?? 0)), h('div', { class: 'muted small' }, 'visitors')),
          h('div', { dataset: { today: 'sessions' } }, h('div', { class: 'today-num' }, num(o.sessions ?? 0)), h('div', { class: 'muted small' }, 'sessions')),
          h('div', { dataset: { today: 'pageviews' } }, h('div', { class: 'today-num' }, num(o.pageviews ?? 0)), h('div', { class: 'muted small' }, 'pageviews')),
        ),
        spark ? h('div', { class: 'today-spark', title: 'Visitors per hour today' }, sparkline(spark, { width: 300, height: 44, name: 'today', stretch: true })) : null,
      );
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      replace(todayCard, h('div', { class: 'live-head' }, 'Today'), h('p', { class: 'error-text' }, err.message));
    }
  };

  // The goals' conversions, which filters do not narrow: with filters the server leaves them out
  // (null) and the panel says why instead of showing nothing.
  const showGoals = (goals, visitors) => {
    if (goals === null && filters.length) {
      goalsPanel.classList.remove('hidden');
      replace(
        goalsBody,
        h('p', { class: 'muted', id: 'goals-not-filtered' }, 'Goals are not filtered: their conversions count all of the range\'s visitors, so they are left out while filters are active. Remove the filters to see them here, or open ', h('a', { href: `#/goals?${new URLSearchParams(rangeParams(range))}` }, 'Goals'), '.'),
      );
      return;
    }
    goalsPanel.classList.toggle('hidden', !Array.isArray(goals) || goals.length === 0);
    if (!Array.isArray(goals)) return;
    const items = goals.map((g) => ({ key: String(g.name ?? g.goal_id ?? ''), count: Number(g.conversions) || 0 }));
    replace(goalsBody, barList(items, { name: 'overview_goals', total: Number(visitors) || undefined, emptyText: 'No goals' }));
  };

  const loadOverview = async () => {
    try {
      // compare=previous: the same figures, with the same filters, for the period just before.
      const { data } = await get('/api/v1/analytics/overview', { ...q, limit: 10, compare: 'previous' }, signal);
      if (signal.aborted) return;
      const o = data?.overview || {};
      const p = data?.previous?.overview;
      const changes = data?.previous?.change || {};
      // With compare on, visitors, sessions and pageviews show the previous value and the server's change.
      const counted = (key, title) =>
        compare && p
          ? kpi(key, title, compact(o[key]), { sub: compareLine(p[key], changes[key]) })
          : kpi(key, title, compact(o[key]), { delta: p && change(o[key], p[key]) });
      replace(
        kpis,
        counted('visitors', 'Visitors'),
        counted('sessions', 'Sessions'),
        counted('pageviews', 'Pageviews'),
        kpi('bounce_rate', 'Bounce rate', o.sessions ? pct(o.bounce_rate) : DASH, { delta: p && p.sessions ? change(o.bounce_rate, p.bounce_rate, false) : null, note: 'Single-page sessions / sessions' }),
        kpi('avg_session_duration', 'Avg. session', o.sessions ? duration(o.avg_session_duration_ms) : DASH, { delta: p && change(o.avg_session_duration_ms, p.avg_session_duration_ms) }),
      );
      const total = Number(o.pageviews) || 0;
      for (const [key, , format] of lists) {
        const dimension = LIST_DIMENSIONS[key];
        const pick = (op) => (item) => addFilter(makeFilter(dimension, op, item.key)).then((message) => message && bar.showError(message));
        replace(listBodies[key], barList(o[key] || [], { name: key, format, total: key === 'top_pages' && total ? total : undefined, onPick: pick('is'), onExclude: pick('is_not') }));
      }
      showGoals(data?.goals, o.visitors);
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      if (err?.status === 400) bar.showError(err.message); // e.g. a filter typed into the URL
      replace(kpis, errorBox(err, () => loadOverview()));
      for (const [key] of lists) replace(listBodies[key], h('p', { class: 'muted small' }, 'Unavailable'));
    }
  };

  const loadTrend = async () => {
    try {
      const { data } = await get('/api/v1/analytics/timeseries', { ...q, interval }, signal);
      if (signal.aborted) return;
      const step = interval === 'hour' ? HOUR_MS : DAY_MS;
      // Buckets after the current one are the future, not zero traffic.
      const points = fillBuckets(data?.points || [], range.fromMs, Math.min(range.toMs, Math.ceil((Date.now() + 1) / step) * step), step);
      if (!points.length || points.every((p) => !p.visitors && !p.sessions)) {
        replace(trendBody, empty('No traffic in this range', 'Install the tracking tag on your site, or pick a longer range.'));
        return;
      }
      replace(
        trendBody,
        lineChart(
          points.map((p) => ({ x: p.start, values: { visitors: Number(p.visitors) || 0, sessions: Number(p.sessions) || 0 } })),
          [
            { key: 'visitors', label: 'Visitors', tone: 'a' },
            { key: 'sessions', label: 'Sessions', tone: 'b' },
          ],
          { xLabel: interval === 'hour' ? hourTick : axisDay, tipLabel: interval === 'hour' ? (x) => `${axisDay(x)} ${axisHour(x)} UTC` : axisDay, name: 'traffic', height: 260 },
        ),
      );
    } catch (err) {
      if (signal.aborted || err?.name === 'AbortError') return;
      if (err?.status === 404) {
        trend.remove(); // the server has no timeseries endpoint (yet)
        return;
      }
      replace(trendBody, errorBox(err, () => loadTrend()));
    }
  };

  const onVisibility = () => {
    if (!document.hidden && !signal.aborted) {
      if (liveTimer) loadLive();
      loadToday();
    }
  };
  liveTimer = setInterval(() => {
    if (!document.hidden) loadLive();
  }, LIVE_POLL_MS);
  todayTimer = setInterval(() => {
    if (!document.hidden) loadToday();
  }, TODAY_POLL_MS);
  document.addEventListener('visibilitychange', onVisibility);
  ctx.onCleanup(() => {
    clearInterval(liveTimer);
    clearInterval(todayTimer);
    document.removeEventListener('visibilitychange', onVisibility);
  });

  await Promise.all([loadLive(), loadToday(), loadOverview(), loadTrend()]);
}
