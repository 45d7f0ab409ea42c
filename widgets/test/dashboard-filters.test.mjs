// Acceptance test of the overview's filters and comparison (widgets/dashboard/src/filters.js,
// views/overview.js) in Chromium against a real crm server on a fresh data directory. The
// dashboard is the copy the binary serves at /; DASHBOARD_FROM=dist serves
// widgets/dashboard/dist/ from this checkout instead (as in dashboard.test.mjs).
//
// Seeded through POST /v1/events (no geo database here, so no countries): visitors from
// www.google.com, news.example.com and direct, on a desktop and a phone (the request's
// user-agent), on /, /pricing, /docs and /blog pages, in the range (a custom range of yesterday
// and today, UTC) and in the period before it; two of them in the last minute (live). Checked,
// each time against the API asked with the same filters: a click on a referrer row adds
// source:is:… (a chip; KPIs, top lists and live narrowed; the timeseries and live requests carry
// the filter; the goals panel says goals are not filtered); a reload keeps it from the URL; a
// device's "exclude" adds device:is_not:…; back and forward; removing a chip; a page glob added
// through the form; the compare toggle's previous figures and signed changes (an arrow, and none
// when the change is null); a value over 256 bytes refused with the server's 400 message and kept
// out of the URL; a hostile value shown as text.
// Screenshots: target/widget-screenshots/dashboard-filters-*.png.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Api, poll } from './lib/api.mjs';
import { browserUserAgent, launchBrowser } from './lib/browser.mjs';
import { startCrm } from './lib/crm-server.mjs';
import { DASHBOARD_FROM, dashboardContext } from './lib/dashboard.mjs';
import { screenshotPath } from './lib/env.mjs';

const SITE = 'dash-filters';
const GOAL = { goal_id: 'pricing', name: 'Pricing page', match: { kind: 'page', pattern: '/pricing*' } };
const PHONE_UA = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1';
const DAY_MS = 86_400_000;
const GOOGLE = 'https://www.google.com/';
const NEWS = 'https://news.example.com/weekly';

// The custom range of the test: yesterday and today (UTC), so the previous period is the two
// days before, which the processor still takes (it accepts client times up to 7 days old).
const today = Math.floor(Date.now() / DAY_MS) * DAY_MS;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
const RANGE = { from: isoDay(today - DAY_MS), to: isoDay(today) };
const API_RANGE = { site_id: SITE, from: RANGE.from, to: isoDay(today + DAY_MS) };

let crm;
let api;
let browser;
let page;
const state = { pageErrors: [], requests: [] };

function need(value, what) {
  assert.ok(value, `cannot run: ${what} failed earlier in this file (see the first failure)`);
  return value;
}

/** Visitors of known sources, devices and pages, now, in the last minute and 2.5 days ago. */
async function sendVisitors() {
  const now = Date.now();
  const recent = now - 20 * 60_000;
  const before = now - 2.5 * DAY_MS;
  const visit = (id, at, referrer, paths) => paths.map((path, i) => ({
    v: 1, type: 'pageview', site_id: SITE, visitor_id: id, session_id: `${id}-s`, ts: at + i * 30_000,
    url: `https://www.shop.example${path}`, title: path, ...(i === 0 && referrer ? { referrer } : {}),
  }));
  const batches = [
    [browserUserAgent(), [
      ...visit('desk-1', recent, GOOGLE, ['/', '/pricing']),
      ...visit('desk-2', recent, GOOGLE, ['/', '/docs/start']),
      ...visit('desk-3', now - 30_000, null, ['/pricing']),
      ...visit('desk-4', recent, NEWS, ['/blog/launch']),
      ...visit('desk-old-1', before, GOOGLE, ['/']),
      ...visit('desk-old-2', before, GOOGLE, ['/pricing']),
    ]],
    [PHONE_UA, [
      ...visit('phone-1', recent, NEWS, ['/blog/launch', '/blog/pricing-guide']),
      ...visit('phone-2', recent, GOOGLE, ['/blog/hello']),
      ...visit('phone-3', now - 30_000, null, ['/']),
      ...visit('phone-old-1', before, NEWS, ['/blog/launch']),
    ]],
  ];
  for (const [agent, events] of batches) {
    const res = await fetch(`${crm.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'text/plain', 'user-agent': agent }, body: JSON.stringify({ events }) });
    assert.equal(res.status, 202, `collector refused the events: ${await res.text()}`);
  }
}

const query = (extra, filters) => {
  const params = new URLSearchParams({ ...API_RANGE, ...extra });
  for (const f of filters) params.append('filter', f);
  return params;
};
const overviewOf = (filters, extra = {}) => api.get(`/api/v1/analytics/overview?${query({ limit: '10', compare: 'previous', ...extra }, filters)}`);
const liveOf = (filters) => api.get(`/api/v1/analytics/live?${query({}, filters)}`);

/** The filters the chips show, as dimension:op:value. */
const chips = () => page.locator('#filter-bar .filter-chip').evaluateAll((els) => els.map((e) => `${e.dataset.dimension}:${e.dataset.op}:${e.dataset.value}`));

/** What the overview shows: KPI numbers and the top lists' keys with counts. */
function shown() {
  return page.evaluate(() => {
    const number = (text) => Number(String(text || '').replace(/[^\d]/g, ''));
    const kpi = (key) => number(document.querySelector(`[data-kpi=${key}] .kpi-value`)?.textContent);
    const list = (name) => [...document.querySelectorAll(`[data-chart=${name}] .bar-row`)].map((li) => [li.dataset.key, number(/^[\d,.]+/.exec(li.querySelector('.bar-value').textContent)?.[0])]);
    return {
      visitors: kpi('visitors'),
      sessions: kpi('sessions'),
      pageviews: kpi('pageviews'),
      top_pages: list('top_pages'),
      top_referrers: list('top_referrers'),
      devices: list('devices'),
    };
  });
}

/**
 * Waits until the chips are `filters` (in order) and the figures and top lists are the API's
 * for them; checks that the route holds them. Returns the API's overview data.
 */
async function expectFiltered(filters) {
  const data = await overviewOf(filters);
  const o = data.overview;
  const expected = {
    visitors: o.visitors, sessions: o.sessions, pageviews: o.pageviews,
    top_pages: o.top_pages.map((i) => [i.key, i.count]),
    top_referrers: o.top_referrers.map((i) => [i.key, i.count]),
    devices: o.devices.map((i) => [i.key, i.count]),
  };
  await poll(`the overview to show ${JSON.stringify(filters)}`, async () => {
    const [now, shownChips] = await Promise.all([shown(), chips()]);
    try {
      assert.deepEqual(shownChips, filters);
      assert.deepEqual(now, expected);
      return true;
    } catch {
      return undefined;
    }
  }, { timeout: 15_000, describe: async () => ({ chips: await chips(), shown: await shown(), expected }) });
  const route = new URLSearchParams((await page.evaluate(() => location.hash)).split('?')[1] || '');
  assert.deepEqual(route.getAll('filter'), filters, 'the route holds the filters');
  assert.equal(await page.locator('#filter-error').textContent(), '', 'no error');
  return data;
}

/** Waits until the live card shows the API's live visitors for `filters`; returns the API's live. */
async function expectLive(filters) {
  const live = await liveOf(filters);
  await page.locator('#live-visitors', { hasText: new RegExp(`^${live.visitors}$`) }).waitFor({ timeout: 10_000 });
  return live;
}

/** The filters the last request to an analytics endpoint carried. */
function lastFilters(endpoint) {
  const url = [...state.requests].reverse().find((u) => u.pathname === `/api/v1/analytics/${endpoint}`);
  return url ? url.searchParams.getAll('filter') : null;
}

/** A change ratio as the dashboard writes it: a signed percentage, the dash when null. */
function percent(change) {
  if (change === null) return '\u2014';
  const abs = Math.abs(change);
  if (abs < 0.0005) return '0%';
  return `${change > 0 ? '+' : '\u2212'}${(abs * 100).toFixed(abs < 0.1 ? 1 : 0)}%`;
}

before(async () => {
  crm = await startCrm();
  api = await Api.login(crm.url, crm.password);
  await api.post('/api/v1/sites', { site_id: SITE, name: 'Dashboard filters test', goals: [GOAL] });
  await sendVisitors();
  await poll('the visitors to be processed (7 in the range, 3 before it)', async () => {
    const data = await overviewOf([]);
    return data.overview.visitors === 7 && data.previous.overview.visitors === 3 && data.overview.devices.length === 2 ? true : undefined;
  }, { timeout: 30_000, describe: () => overviewOf([]) });
  // The keys as the server labels them: the phone's device (the devices of the one phone-only
  // page) and Google's referrer host.
  const hello = (await overviewOf(['page:is:/blog/hello'])).overview;
  state.phone = hello.devices[0]?.key;
  state.google = hello.top_referrers[0]?.key;
  assert.ok(state.phone && /google/.test(state.google), `keys: ${JSON.stringify(hello)}`);
  browser = await launchBrowser();
  const context = await dashboardContext(browser, crm.url, { width: 1440, height: 1000 });
  page = await context.newPage();
  page.on('pageerror', (err) => state.pageErrors.push(err.message));
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (url.pathname.startsWith('/api/v1/analytics/')) state.requests.push(url);
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  await crm?.stop();
});

test('sign in and open the overview of the range, unfiltered', async (t) => {
  t.diagnostic(`dashboard from ${DASHBOARD_FROM}; phone device key: ${state.phone}; Google's source key: ${state.google}`);
  await page.goto(`${crm.url}/`);
  await page.locator('#login-username').waitFor({ timeout: 15_000 });
  await page.fill('#login-username', 'admin');
  await page.fill('#login-password', crm.password);
  await page.click('.login-form button[type=submit]');
  await page.locator('#site-select').waitFor({ timeout: 15_000 });
  await page.selectOption('#site-select', SITE);
  await page.evaluate((hash) => { location.hash = hash; }, `#/overview?${new URLSearchParams(RANGE)}`);
  const data = await expectFiltered([]);
  assert.equal(data.overview.visitors, 7);
  // The goals' conversions are shown without filters.
  const goal = page.locator('#overview-goals [data-chart=overview_goals] .bar-row');
  await goal.first().waitFor({ timeout: 10_000 });
  assert.equal(await goal.getAttribute('data-key'), GOAL.name);
  assert.match(await goal.locator('.bar-value').textContent(), new RegExp(`^${data.goals[0].conversions}\\b`));
  assert.equal(await page.locator('#goals-not-filtered').count(), 0);
  state.open = true;
});

test('a click on a referrer row filters the overview, the chart and live by it', async () => {
  need(state.open, 'opening the overview');
  await page.locator(`[data-chart=top_referrers] .bar-row[data-key="${state.google}"] .bar-label`).click();
  const filters = [`source:is:${state.google}`];
  const data = await expectFiltered(filters);
  assert.deepEqual([data.overview.visitors, data.overview.pageviews], [3, 5], 'desk-1, desk-2 and phone-2');
  assert.deepEqual(data.filters, [{ dimension: 'source', op: 'is', value: state.google }]);
  assert.equal(await page.locator('#filter-bar .filter-chip .filter-dimension').textContent(), 'Source');
  assert.deepEqual(lastFilters('timeseries'), filters, 'the chart asked for the filtered series');
  assert.deepEqual(lastFilters('live'), filters, 'live asked with the filter');
  await page.locator('[data-chart=traffic] svg').first().waitFor({ timeout: 10_000 });
  await expectLive(filters);
  assert.match(await page.locator('#live-panel .live-head').textContent(), /filtered/);
  await page.locator('#goals-not-filtered').waitFor({ timeout: 10_000 });
  assert.match(await page.locator('#goals-not-filtered').textContent(), /Goals are not filtered/);
  assert.equal(data.goals, null, 'the API leaves the goals out with filters');
  await page.screenshot({ path: screenshotPath('dashboard-filters-source.png'), fullPage: true });
  state.source = true;
});

test('a reload keeps the filter from the URL', async () => {
  need(state.source, 'the referrer filter');
  const hash = await page.evaluate(() => location.hash);
  await page.reload();
  await page.locator('#filter-bar').waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => location.hash), hash);
  await expectFiltered([`source:is:${state.google}`]);
});

test('"exclude" on a device adds is_not; back and forward; removing a chip', async () => {
  need(state.source, 'the referrer filter');
  const both = [`source:is:${state.google}`, `device:is_not:${state.phone}`];
  await page.locator(`[data-chart=devices] .bar-row[data-key="${state.phone}"] .bar-exclude`).click();
  const data = await expectFiltered(both);
  assert.equal(data.overview.visitors, 2, 'desk-1 and desk-2');

  await page.goBack();
  await expectFiltered([`source:is:${state.google}`]);
  await page.goForward();
  await expectFiltered(both);

  await page.locator('#filter-bar .filter-chip[data-dimension=source] .filter-remove').click();
  const rest = await expectFiltered([`device:is_not:${state.phone}`]);
  assert.equal(rest.overview.visitors, 4, 'the desktop visitors');
  assert.deepEqual(lastFilters('live'), [`device:is_not:${state.phone}`]);
  const live = await expectLive([`device:is_not:${state.phone}`]);
  assert.equal(live.visitors, 1, 'desk-3, in the last minute');
  state.device = true;
});

test('a page glob added through the form', async () => {
  need(state.device, 'the device filter');
  await page.selectOption('#filter-dimension', 'page');
  await page.selectOption('#filter-op', 'glob');
  await page.fill('#filter-value', '/blog/*');
  await page.click('#filter-add');
  const data = await expectFiltered([`device:is_not:${state.phone}`, 'page:glob:/blog/*']);
  assert.deepEqual([data.overview.visitors, data.overview.pageviews], [1, 1], 'desk-4 on /blog/launch');
  assert.deepEqual(lastFilters('timeseries'), [`device:is_not:${state.phone}`, 'page:glob:/blog/*']);
  state.glob = true;
});

/** The compare lines of visitors, sessions and pageviews equal the API's previous period. */
async function expectCompared(filters) {
  const data = await expectFiltered(filters);
  for (const key of ['visitors', 'sessions', 'pageviews']) {
    const line = page.locator(`[data-kpi=${key}] .kpi-compare`);
    await line.waitFor({ timeout: 10_000 });
    const previous = data.previous.overview[key];
    const change = data.previous.change[key];
    assert.equal((await line.locator('.kpi-previous').textContent()).trim(), String(previous), `${key}: the previous value`);
    assert.equal(await line.getAttribute('data-change'), change === null ? 'null' : String(change));
    assert.equal((await line.locator('.kpi-change').textContent()).replace(/[\u25B2\u25BC]/g, ''), percent(change), `${key}: the change`);
    const arrow = await line.locator('.kpi-arrow').count();
    assert.equal(arrow, change === null || change === 0 ? 0 : 1, `${key}: an arrow only for a change`);
    if (arrow) assert.equal(await line.locator('.kpi-arrow').textContent(), change > 0 ? '\u25B2' : '\u25BC');
  }
  return data;
}

test('compare with the previous period shows the API\'s previous figures and changes', async () => {
  need(state.glob, 'the glob filter');
  assert.equal(await page.locator('.kpi-compare').count(), 0, 'no comparison before the toggle');
  await page.click('#compare-toggle');
  await page.waitForFunction(() => new URLSearchParams(location.hash.split('?')[1]).get('compare') === 'previous');
  assert.equal(await page.getAttribute('#compare-toggle', 'aria-pressed'), 'true');
  const none = await expectCompared([`device:is_not:${state.phone}`, 'page:glob:/blog/*']);
  assert.deepEqual([none.previous.overview.visitors, none.previous.change.visitors], [0, null], 'nothing before: no change');

  await page.locator('#filter-bar .filter-chip[data-dimension=page] .filter-remove').click();
  const data = await expectCompared([`device:is_not:${state.phone}`]);
  assert.equal(await page.getAttribute('#compare-toggle', 'aria-pressed'), 'true', 'compare stays on');
  assert.deepEqual([data.previous.overview.visitors, data.previous.change.visitors], [2, 1], '4 desktop visitors now, 2 before: +100%');
  assert.equal(await page.locator('[data-kpi=visitors] .kpi-change').textContent(), '\u25B2+100%');
  await page.screenshot({ path: screenshotPath('dashboard-filters-compare.png'), fullPage: true });
  state.compare = true;
});

test('a value the server refuses shows its 400 message and stays out of the URL', async () => {
  need(state.compare, 'the comparison');
  const hash = await page.evaluate(() => location.hash);
  const long = `/${'x'.repeat(300)}`;
  const refused = await api.request('GET', `/api/v1/analytics/overview?${query({}, [`device:is_not:${state.phone}`, `page:prefix:${long}`])}`);
  assert.equal(refused.status, 400);
  assert.equal(refused.body.error.code, 'invalid_parameter');
  await page.selectOption('#filter-dimension', 'page');
  await page.selectOption('#filter-op', 'prefix');
  await page.fill('#filter-value', long);
  await page.click('#filter-add');
  await page.locator('#filter-error', { hasText: refused.body.error.message }).waitFor({ timeout: 10_000 });
  assert.equal((await page.locator('#filter-error').textContent()).trim(), refused.body.error.message);
  assert.equal(await page.evaluate(() => location.hash), hash, 'the route is unchanged');
  assert.deepEqual(await chips(), [`device:is_not:${state.phone}`]);
  await page.screenshot({ path: screenshotPath('dashboard-filters-refused.png'), fullPage: true });

  // A filter typed into the URL is refused the same way, where the filters are.
  const bad = `#/overview?${new URLSearchParams({ ...RANGE, filter: 'planet:is:mars' })}`;
  const message = (await api.request('GET', `/api/v1/analytics/overview?${query({}, ['planet:is:mars'])}`)).body.error.message;
  await page.evaluate((h) => { location.hash = h; }, bad);
  await page.locator('#filter-error', { hasText: message }).waitFor({ timeout: 10_000 });
  await page.locator('#filter-bar .filter-chip .filter-remove').click();
  await expectFiltered([]);
});

test('a hostile filter value is shown as text', async () => {
  need(state.open, 'opening the overview');
  const hostile = '<img src=x onerror="window.__xss=1">';
  await page.selectOption('#filter-dimension', 'page');
  await page.selectOption('#filter-op', 'is');
  await page.fill('#filter-value', hostile);
  await page.click('#filter-add');
  await expectFiltered([`page:is:${hostile}`]);
  assert.equal(await page.locator('#filter-bar .filter-value').textContent(), hostile);
  assert.equal(await page.locator('#filter-bar img').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.deepEqual(state.pageErrors, [], 'no uncaught errors in the page');
});
