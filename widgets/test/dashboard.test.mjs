// Acceptance test of the growth dashboard (widgets/dashboard) in Chromium against a real crm
// server with simulated data: `crm demo accounts` (customer health and churn) on a fresh data
// directory, then `crm up` on it, then `crm demo` traffic (visitors, leads) plus one visitor with
// hostile traits. The dashboard is the copy the binary serves at / (index.html, /app/app.js,
// /app/app.css); DASHBOARD_FROM=dist serves widgets/dashboard/dist/ from this checkout instead,
// to try dashboard changes without rebuilding the binary.
//
// Checked: login; overview (KPIs, charts, range and site switch); visitors list and a visitor timeline;
// leads list and a lead's breakdown and timeline; accounts & health (executive tiles with a
// missing figure explained, churn risk, account detail); a funnel built in the UI over visitors
// sent with known counts (figures, reload, a bad step's 400 shown); retention cohorts matching
// the API; goals of known counts (conversions, rates, sources) and the goals editor (a 422 at its
// field, goals added and removed); hostile strings shown as text; an
// invalid access token (one shared refresh when the server has refresh tokens, else back to
// login); reload; logout; phone layout; a sales rep's screens; the login rate limit.
// Checks that need a newer server (refresh tokens, roles, lockout) adapt to what it offers.
// Screenshots: target/widget-screenshots/dashboard-*.png.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { Api, poll } from './lib/api.mjs';
import { browserUserAgent, launchBrowser } from './lib/browser.mjs';
import { startCrm } from './lib/crm-server.mjs';
import { DASHBOARD_FROM, DIST, DIST_FILES, dashboardContext as dashboardContextOf } from './lib/dashboard.mjs';
import { CRM_BIN, screenshotPath } from './lib/env.mjs';

const run = promisify(execFile);
const SITE = 'demo';

let crm;
let browser;
let context;
let page;
const state = { refreshRequests: 0, pageErrors: [] };

function need(value, what) {
  assert.ok(value, `cannot run: ${what} failed earlier in this file (see the first failure)`);
  return value;
}

async function crmCommand(args, timeout = 60_000) {
  try {
    return await run(CRM_BIN, args, { timeout, env: { ...process.env, RUST_LOG: 'warn', RUST_BACKTRACE: '0' }, maxBuffer: 16 << 20 });
  } catch (err) {
    throw new Error(`${CRM_BIN} ${args.join(' ')} failed: ${err.message}\n${err.stdout || ''}\n${err.stderr || ''}`);
  }
}

async function status(path, token) {
  const res = await fetch(crm.url + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  await res.arrayBuffer();
  return res.status;
}

/** Sends a visitor whose page title and traits are markup: the dashboard must show them as text. */
async function sendHostileVisitor() {
  const events = [
    { v: 1, type: 'pageview', site_id: SITE, visitor_id: 'hostile-visitor', session_id: 'hostile-session', url: 'https://evil.example/pricing', title: '<img src=x onerror="window.__xss=1">' },
    {
      v: 1,
      type: 'identify',
      site_id: SITE,
      visitor_id: 'hostile-visitor',
      session_id: 'hostile-session',
      url: 'https://evil.example/pricing',
      traits: { email: 'mallory@evil.example', name: '<img src=x onerror="window.__xss=2">', company: '<script>window.__xss=3</script>' },
    },
  ];
  const res = await fetch(`${crm.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'text/plain', 'user-agent': browserUserAgent() }, body: JSON.stringify({ events }) });
  assert.equal(res.status, 202, `collector refused the hostile events: ${await res.text()}`);
}

// A funnel of known counts on the demo site, on paths and an event name the demo traffic never
// uses: 6 visitors open /funnel-e2e, 5 of them /funnel-e2e/pricing 3 minutes later, 3 of those
// send the custom event funnel_e2e_signup 3 minutes after that.
const FUNNEL = {
  home: '/funnel-e2e',
  pricing: '/funnel-e2e/pricing',
  event: 'funnel_e2e_signup',
  depths: [3, 3, 3, 2, 2, 1],
  visitors: ['6', '5', '3'],
  rates: ['100%', '83.3%', '50%'],
};
FUNNEL.api = new URLSearchParams({ site_id: SITE, step1: `page:${FUNNEL.home}`, step2: 'page:/funnel-e2e/pricing*', step3: `event:${FUNNEL.event}`, window: '7d', order: 'ordered' });

async function sendFunnelVisitors() {
  const start = Date.now() - 30 * 60_000;
  const events = FUNNEL.depths.flatMap((depth, i) => {
    const common = { v: 1, site_id: SITE, visitor_id: `funnel-e2e-${i + 1}`, session_id: `funnel-e2e-session-${i + 1}` };
    const at = (minutes) => start + i * 60_000 + minutes * 60_000;
    return [
      { ...common, type: 'pageview', ts: at(0), url: `https://shop.example${FUNNEL.home}`, title: 'Funnel e2e' },
      depth >= 2 ? { ...common, type: 'pageview', ts: at(3), url: `https://shop.example${FUNNEL.pricing}`, title: 'Funnel e2e pricing' } : null,
      depth >= 3 ? { ...common, type: 'custom', ts: at(6), url: `https://shop.example${FUNNEL.pricing}`, name: FUNNEL.event } : null,
    ].filter(Boolean);
  });
  const res = await fetch(`${crm.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'text/plain', 'user-agent': browserUserAgent() }, body: JSON.stringify({ events }) });
  assert.equal(res.status, 202, `collector refused the funnel events: ${await res.text()}`);
}

// Goals of known counts on a site of their own (a conversion rate divides by all the site's
// visitors): 3 visitors; goals-1 (first from utm_source=newsletter) and goals-2 (from
// www.google.com) reach /thanks, goals-2 twice (/thanks/again too); goals-1 sends the custom event
// signup {plan: "team", seats: "3"}, goals-2 signup {plan: "solo", seats: 3}; goals-3 only sees
// /pricing. So /thanks* converts 2 of 3 visitors (3 events, one from each source), signup where
// plan = "team" 1 (newsletter), and a number condition seats = 3 only goals-2 (the "3" of goals-1
// is a string).
const GOALS = {
  site: 'e2e-goals',
  goals: [
    { goal_id: 'thanks', name: 'Thank-you page', match: { kind: 'page', pattern: '/thanks*' } },
    { goal_id: 'team', name: 'Team signup', match: { kind: 'event', name: 'signup', property: { key: 'plan', value: 'team' } } },
  ],
};

async function sendGoalVisitors() {
  const start = Date.now() - 30 * 60_000;
  const url = (path) => `https://goals.example${path}`;
  const visitor = (i) => ({ v: 1, site_id: GOALS.site, visitor_id: `goals-${i}`, session_id: `goals-session-${i}` });
  const at = (minutes) => start + minutes * 60_000;
  const events = [
    { ...visitor(1), type: 'pageview', ts: at(0), url: url('/?utm_source=newsletter'), props: { utm_source: 'newsletter' } },
    { ...visitor(1), type: 'pageview', ts: at(1), url: url('/thanks') },
    { ...visitor(1), type: 'custom', ts: at(2), url: url('/thanks'), name: 'signup', props: { plan: 'team', seats: '3' } },
    { ...visitor(2), type: 'pageview', ts: at(0), url: url('/'), referrer: 'https://www.google.com/' },
    { ...visitor(2), type: 'pageview', ts: at(1), url: url('/thanks/again') },
    { ...visitor(2), type: 'pageview', ts: at(2), url: url('/thanks') },
    { ...visitor(2), type: 'custom', ts: at(3), url: url('/thanks'), name: 'signup', props: { plan: 'solo', seats: 3 } },
    { ...visitor(3), type: 'pageview', ts: at(0), url: url('/pricing') },
  ];
  const res = await fetch(`${crm.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'text/plain', 'user-agent': browserUserAgent() }, body: JSON.stringify({ events }) });
  assert.equal(res.status, 202, `collector refused the goal events: ${await res.text()}`);
}

before(async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'crm-dashboard-e2e-'));
  // The account simulator needs the store to itself: it runs before `crm up`.
  await crmCommand(['demo', 'accounts', '--accounts', '60', '--days', '365', '--data-dir', dataDir]);
  crm = await startCrm({ dataDir });
  const api = await Api.login(crm.url, crm.password);
  await api.post('/api/v1/sites', { site_id: 'e2e-empty', name: 'Empty site' });
  await api.post('/api/v1/sites', { site_id: GOALS.site, name: 'Goals site' });
  await crmCommand(['demo', '--target', crm.url, '--visitors', '40', '--days', '3']);
  await sendHostileVisitor();
  await sendFunnelVisitors();
  await sendGoalVisitors();
  state.api = api;
  await poll('the demo traffic to be processed into visitors and leads', async () => {
    const overview = await api.get(`/api/v1/analytics/overview?site_id=${SITE}`);
    const leads = await api.get(`/api/v1/leads?site_id=${SITE}&limit=200`);
    const hostile = await api.visitor(SITE, 'hostile-visitor');
    return overview.overview.visitors > 0 && leads.length > 1 && hostile?.traits?.email ? true : undefined;
  }, { timeout: 30_000 });

  const login = await new Api(crm.url).data('POST', '/api/v1/auth/login', { username: 'admin', password: crm.password });
  state.refreshTokens = typeof login.refresh_token === 'string';
  state.timeseries = (await status(`/api/v1/analytics/timeseries?site_id=${SITE}&interval=day`, login.access_token)) !== 404;
  state.live = (await status(`/api/v1/analytics/live?site_id=${SITE}`, login.access_token)) !== 404;
  state.roles = (await status('/api/v1/auth/me', login.access_token)) === 200;
  if (state.roles) {
    await api.post('/api/v1/users', { username: 'e2e-rep', password: 'e2e-rep-password', role: 'sales_rep' });
  }

  browser = await launchBrowser();
  context = await dashboardContext({ width: 1440, height: 900 });
  context.on('request', (request) => {
    if (request.url().endsWith('/api/v1/auth/refresh')) state.refreshRequests++;
  });
  page = await context.newPage();
  page.on('pageerror', (err) => state.pageErrors.push(err.message));
});

/** A browser context that gets the dashboard from the binary, or from dist/ (DASHBOARD_FROM). */
function dashboardContext(viewport) {
  return dashboardContextOf(browser, crm.url, viewport);
}

after(async () => {
  await browser?.close().catch(() => {});
  await crm?.stop();
});

test('the server serves the dashboard at /', async (t) => {
  t.diagnostic(`dashboard from ${DASHBOARD_FROM}; refresh tokens: ${state.refreshTokens}; timeseries: ${state.timeseries}; live: ${state.live}; roles: ${state.roles}`);
  if (DASHBOARD_FROM === 'binary') {
    const res = await fetch(`${crm.url}/`);
    const html = await res.text();
    assert.ok(res.ok && html.includes('/app/app.js') && html.includes('/app/app.css'),
      `GET / must serve the dashboard's index.html (is the dashboard embedded in ${CRM_BIN}? DASHBOARD_FROM=dist tests the checkout's build instead); got HTTP ${res.status}: ${html.slice(0, 200)}`);
    for (const file of ['app.js', 'app.css']) {
      const served = await (await fetch(`${crm.url}/app/${file}`)).text();
      const built = await readFile(join(DIST, file), 'utf8');
      if (served !== built) t.diagnostic(`note: /app/${file} served by the binary differs from widgets/dashboard/dist/${file} (binary older than the build?)`);
    }
  }
});

test('login, then the overview shows traffic with charts', async () => {
  await page.goto(`${crm.url}/`);
  await page.locator('#login-username').waitFor({ timeout: 15_000 });
  await page.screenshot({ path: screenshotPath('dashboard-login.png') });
  await page.fill('#login-username', 'admin');
  await page.fill('#login-password', 'wrong-password');
  await page.click('.login-form button[type=submit]');
  await page.locator('#login-error', { hasText: /invalid username or password/i }).waitFor({ timeout: 10_000 });

  await page.fill('#login-password', crm.password);
  await page.click('.login-form button[type=submit]');
  const visitors = page.locator('[data-kpi=visitors] .kpi-value');
  await visitors.waitFor({ timeout: 15_000 });
  const count = Number((await visitors.textContent()).replace(/[^\d]/g, ''));
  assert.ok(count > 0, `the visitors KPI shows ${await visitors.textContent()}`);
  assert.match(await page.locator('[data-kpi=bounce_rate] .kpi-value').textContent(), /%$/);
  await page.locator('[data-chart=top_pages] .bar-row').first().waitFor({ timeout: 10_000 });
  assert.ok((await page.locator('[data-chart=top_referrers] .bar-row').count()) > 0, 'referrers chart has bars');
  if (state.timeseries) {
    await page.locator('[data-chart=traffic] svg path.line').first().waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('[data-chart=traffic] svg path.line').count(), 2, 'a line for visitors and one for sessions');
  } else {
    assert.equal(await page.locator('#traffic-panel').count(), 0, 'without the timeseries endpoint the panel is hidden');
  }
  if (state.live) await page.locator('#live-visitors').waitFor({ timeout: 10_000 });
  else assert.equal(await page.locator('#live-panel').count(), 0, 'without the live endpoint the panel is hidden');
  await page.locator('[data-today=visitors]').waitFor({ timeout: 10_000 });
  await page.screenshot({ path: screenshotPath('dashboard-overview.png'), fullPage: true });

  // Another range re-renders from the route.
  await page.click('.range-bar [data-value="30"]');
  await page.waitForFunction(() => location.hash === '#/overview?range=30');
  await page.locator('.range-title', { hasText: 'Last 30 days' }).waitFor();
  await page.locator('[data-kpi=visitors] .kpi-value').waitFor();

  // The site picker: a site without traffic shows empty states, then back to the demo site.
  await page.selectOption('#site-select', 'e2e-empty');
  await page.locator('[data-chart=top_pages].bars-empty').waitFor({ timeout: 10_000 });
  assert.equal((await page.locator('[data-kpi=visitors] .kpi-value').textContent()).trim(), '0');
  await page.selectOption('#site-select', SITE);
  await page.locator('[data-chart=top_pages] .bar-row').first().waitFor({ timeout: 10_000 });
  state.overview = true;
});

test('visitors: ranked list, hostile strings as text, a visitor timeline', async () => {
  need(state.overview, 'login');
  await page.click('[data-nav=visitors]');
  const rows = page.locator('#visitors-panel tbody tr');
  await rows.first().waitFor({ timeout: 10_000 });
  assert.ok((await rows.count()) > 5, 'several visitors are listed');
  // The hostile visitor identified with markup as name: shown literally, never run.
  await page.click('.segmented [data-value="last_seen"]');
  const hostile = page.locator('#visitors-panel .who-name', { hasText: '<img src=x onerror="window.__xss=2">' });
  await hostile.waitFor({ timeout: 10_000 });
  await page.screenshot({ path: screenshotPath('dashboard-visitors.png'), fullPage: true });
  await hostile.click();
  await page.locator('#visitor-timeline .tl-item').first().waitFor({ timeout: 10_000 });
  await page.locator('#visitor-timeline .tl-title', { hasText: '<img src=x onerror="window.__xss=1">' }).waitFor();
  assert.equal(await page.locator('#visitor-profile dd', { hasText: '<script>window.__xss=3</script>' }).count(), 1, 'the company trait is shown as text');

  // The top-intent visitor's page.
  await page.click('[data-nav=visitors]');
  await page.locator('#visitors-panel tbody tr').first().click();
  await page.locator('#visitor-timeline .tl-item').first().waitFor({ timeout: 10_000 });
  assert.ok((await page.locator('#visitor-timeline .tl-item').count()) > 3, 'the timeline lists the visitor events');
  await page.locator('#visitor-signals .chip').first().waitFor();
  await page.screenshot({ path: screenshotPath('dashboard-visitor.png'), fullPage: true });
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no markup from the data ran');
  state.visitors = true;
});

test('leads: list by score, a lead with its breakdown and multi-device timeline', async () => {
  need(state.overview, 'login');
  await page.click('[data-nav=leads]');
  const rows = page.locator('#leads-panel tbody tr');
  await rows.first().waitFor({ timeout: 10_000 });
  assert.ok((await rows.count()) > 1, 'leads are listed');
  assert.match(await rows.first().locator('.score-num').textContent(), /^\d+$/);
  await page.screenshot({ path: screenshotPath('dashboard-leads.png'), fullPage: true });
  await rows.first().click();
  await page.locator('#lead-breakdown .meter').first().waitFor({ timeout: 10_000 });
  assert.ok((await page.locator('#lead-reasons li').count()) > 0, 'the lead shows why it scored');
  await page.locator('#lead-timeline .tl-item').first().waitFor({ timeout: 10_000 });
  assert.ok((await page.locator('#lead-timeline .tl-item').count()) > 3, 'the lead timeline lists events');
  assert.ok((await page.locator('#lead-devices li').count()) >= 1, 'the lead lists its devices');
  await page.screenshot({ path: screenshotPath('dashboard-lead.png'), fullPage: true });
  state.leads = true;
});

test('accounts & health: executive tiles, churn risk, an account', async () => {
  need(state.overview, 'login');
  await page.click('[data-nav=accounts]');
  const churnTile = page.locator('[data-kpi=avg_churn_risk] .kpi-value');
  await churnTile.waitFor({ timeout: 10_000 });
  assert.match(await churnTile.textContent(), /%$/, 'the average churn risk is a percentage');
  // A figure the server cannot compute yet is a dash explained by a tooltip.
  const success = page.locator('[data-kpi=intervention_success_rate]');
  assert.equal((await success.locator('.kpi-value').textContent()).trim(), '\u2014');
  assert.match(await success.getAttribute('title'), /playbook task/);
  const rows = page.locator('#health-panel tbody tr');
  await rows.first().waitFor({ timeout: 10_000 });
  assert.ok((await rows.count()) > 10, 'the simulated accounts are listed');
  assert.ok((await page.locator('#health-panel [data-churn]').count()) > 0, 'accounts show their churn risk');
  await page.locator('#tasks-panel .panel-body > *').first().waitFor();
  await page.screenshot({ path: screenshotPath('dashboard-accounts.png'), fullPage: true });

  await page.click('.segmented [data-value="churn"]');
  await page.waitForFunction(() => location.hash.includes('sort=churn'));
  await page.locator('#health-panel tbody tr').first().click();
  await page.locator('#account-churn .churn').waitFor({ timeout: 10_000 });
  assert.match(await page.locator('#account-churn').textContent(), /\d%/);
  assert.ok((await page.locator('#churn-drivers li').count()) > 0, 'the riskiest account shows its churn drivers');
  assert.ok((await page.locator('#account-components .meter').count()) === 5, 'five health components');
  await page.locator('[data-chart=health-history] svg circle').first().waitFor({ timeout: 5_000 });
  await page.screenshot({ path: screenshotPath('dashboard-account.png'), fullPage: true });
  state.accounts = true;
});

test('funnels: a funnel built step by step shows its visitors, survives a reload, and a bad step shows the 400', async () => {
  need(state.overview, 'login');
  const api = state.api;
  // The processor has the funnel visitors once the API counts them.
  const expected = await poll('the funnel visitors to be processed', async () => {
    const report = await api.get(`/api/v1/analytics/funnel?${FUNNEL.api}`);
    const counts = report.steps.map((s) => String(s.visitors));
    return counts.join() === FUNNEL.visitors.join() ? report : undefined;
  }, { timeout: 30_000, describe: () => api.get(`/api/v1/analytics/funnel?${FUNNEL.api}`) });
  assert.equal(expected.steps[1].median_ms_from_previous, 180_000);

  await page.click('[data-nav=funnels]');
  const rows = page.locator('#funnel-steps .funnel-step');
  await rows.nth(1).waitFor({ timeout: 10_000 });
  assert.equal(await rows.count(), 2, 'a new funnel starts with two steps');
  assert.ok(await page.locator('#funnel-steps [data-step="1"] .step-remove').isDisabled(), 'a funnel cannot have fewer than two steps');
  await page.locator('#funnel-report .state', { hasText: 'No funnel yet' }).waitFor();

  await page.selectOption('#funnel-steps [data-step="1"] .step-kind', 'page');
  await page.fill('#funnel-steps [data-step="1"] .step-value', FUNNEL.home);
  await page.fill('#funnel-steps [data-step="2"] .step-value', '/funnel-e2e/pricing*');
  await page.click('#funnel-add');
  await page.selectOption('#funnel-steps [data-step="3"] .step-kind', 'event');
  await page.fill('#funnel-steps [data-step="3"] .step-value', FUNNEL.event);
  await page.selectOption('#funnel-window', '7d');
  await page.selectOption('#funnel-order', 'ordered');
  await page.click('#funnel-run');
  await page.waitForFunction(() => location.hash.startsWith('#/funnels?') && location.hash.includes('step3=event'));

  const chart = page.locator('#funnel-report [data-chart=funnel]');
  const checkReport = async () => {
    await chart.locator('.funnel-row').nth(2).waitFor({ timeout: 10_000 });
    assert.deepEqual((await chart.locator('.funnel-visitors').allTextContents()).map((t) => t.trim()), FUNNEL.visitors, 'visitors per step');
    assert.deepEqual((await chart.locator('.funnel-rate').allTextContents()).map((t) => t.trim()), FUNNEL.rates, 'share of step 1');
    assert.equal((await chart.locator('[data-step="3"] .funnel-drop').textContent()).trim(), '2 dropped (40%)');
    assert.equal((await chart.locator('[data-step="2"] .funnel-time').textContent()).trim(), 'median 3m 0s');
    assert.equal((await page.locator('[data-kpi=funnel_conversion] .kpi-value').textContent()).trim(), '50%');
  };
  await checkReport();
  await page.screenshot({ path: screenshotPath('dashboard-funnels.png'), fullPage: true });

  // The funnel lives in the route: a reload builds and runs it again.
  if (state.refreshTokens) {
    await page.reload();
    await checkReport();
    assert.equal(await page.locator('#funnel-steps [data-step="3"] .step-value').inputValue(), FUNNEL.event);
    assert.equal(await page.locator('#funnel-window').inputValue(), '7d');
  }

  // An empty event name and a page glob without its slash: the API's 400 names the step.
  await page.fill('#funnel-steps [data-step="3"] .step-value', '');
  await page.click('#funnel-run');
  const error = page.locator('#funnel-error');
  await error.filter({ hasText: /^Step 3: / }).waitFor({ timeout: 10_000 });
  assert.match(await error.textContent(), /^Step 3: the event of a step must be 1 to \d+ bytes/);
  assert.equal(await page.locator('#funnel-steps [data-step="3"] .step-value').getAttribute('aria-invalid'), 'true');
  assert.equal(await chart.count(), 0, 'no report for a funnel the server refused');
  await page.fill('#funnel-steps [data-step="3"] .step-value', FUNNEL.event);
  await page.fill('#funnel-steps [data-step="2"] .step-value', 'funnel-e2e/pricing');
  await page.click('#funnel-run');
  await error.filter({ hasText: /^Step 2: / }).waitFor({ timeout: 10_000 });
  assert.match(await error.textContent(), /^Step 2: a page glob starts with `\/` or `\*`/);
  assert.equal(await page.locator('#funnel-steps [data-step="2"] .step-value').getAttribute('aria-invalid'), 'true');
  await page.screenshot({ path: screenshotPath('dashboard-funnels-error.png'), fullPage: true });
  state.funnels = true;
});

test('retention: the cohort grid shows the API\'s cohorts as shaded percentages', async () => {
  need(state.overview, 'login');
  const api = state.api;
  await page.click('[data-nav=retention]');
  const table = page.locator('#retention-panel table.retention');
  await table.locator('tbody tr').first().waitFor({ timeout: 10_000 });

  /** The grid's rows by cohort start: { size, cells } as shown. */
  const shown = () => table.locator('tbody tr').evaluateAll((trs) => trs.map((tr) => ({
    start: tr.dataset.cohort,
    size: tr.querySelector('.ret-size').textContent.trim(),
    cells: [...tr.querySelectorAll('td.ret-cell')].map((td) => ({ text: td.textContent.trim(), shaded: td.style.backgroundColor !== '' })),
  })));
  const compare = async (query) => {
    const data = await api.get(`/api/v1/analytics/retention?${new URLSearchParams({ site_id: SITE, ...query })}`);
    const rows = await shown();
    assert.equal(rows.length, data.cohorts.length, 'one row per cohort');
    const filled = data.cohorts.filter((c) => c.size > 0);
    assert.ok(filled.length > 0, `the API has a non-empty cohort: ${JSON.stringify(data.cohorts)}`);
    for (const cohort of filled) {
      const row = rows.find((r) => r.start === cohort.start);
      assert.ok(row, `a row for the cohort of ${cohort.start}`);
      assert.equal(row.size, String(cohort.size), `the size of the cohort of ${cohort.start}`);
      assert.equal(row.cells.length, cohort.rates.length, `a cell per period of the cohort of ${cohort.start}`);
      assert.equal(row.cells[0].text, '100%', 'period 0 is the whole cohort');
      for (const cell of row.cells) {
        assert.match(cell.text, /^\d+(\.\d)?%$/, 'rates are percentages');
        assert.ok(cell.shaded, 'cells are shaded by their rate');
      }
      cohort.rates.forEach((rate, n) => assert.equal(row.cells[n].text, `${(rate * 100).toFixed(1).replace(/\.0+$/, '')}%`));
    }
    return data;
  };

  // The defaults: 8 weekly cohorts by first visit.
  await compare({ period: 'week', cohorts: '8', start: 'first_visit', return: 'any' });

  // Daily cohorts of the visitors who sent the funnel's signup event: the 3 funnel finishers.
  await page.selectOption('#retention-period', 'day');
  await page.fill('#retention-cohorts', '5');
  await page.selectOption('#retention-start-kind', 'event');
  await page.fill('#retention-start-value', FUNNEL.event);
  await page.click('#retention-run');
  await page.waitForFunction(() => location.hash.includes('period=day') && location.hash.includes('cohorts=5'));
  await page.locator('#retention-panel', { hasText: `by event:${FUNNEL.event}` }).locator('table.retention th', { hasText: 'Day 0' }).waitFor({ timeout: 10_000 });
  const daily = await compare({ period: 'day', cohorts: '5', start: `event:${FUNNEL.event}`, return: 'any' });
  assert.equal(daily.cohorts.reduce((sum, c) => sum + c.size, 0), 3, 'three visitors signed up');
  await page.screenshot({ path: screenshotPath('dashboard-retention.png'), fullPage: true });

  // Back to first visits, where the demo's days are the cohorts.
  await page.selectOption('#retention-start-kind', 'first_visit');
  await page.click('#retention-run');
  await page.waitForFunction(() => location.hash.includes('start=first_visit') && location.hash.includes('period=day'));
  await page.locator('#retention-panel', { hasText: 'daily cohorts by first visit' }).locator('table.retention tbody tr').nth(4).waitFor({ timeout: 10_000 });
  await compare({ period: 'day', cohorts: '5', start: 'first_visit', return: 'any' });

  // A return page without its leading slash: the API's 400, shown on the form.
  await page.selectOption('#retention-return-kind', 'page');
  await page.fill('#retention-return-value', 'pricing');
  await page.click('#retention-run');
  const error = page.locator('#retention-error');
  await error.filter({ hasText: /^Returns on: / }).waitFor({ timeout: 10_000 });
  assert.match(await error.textContent(), /^Returns on: a page glob starts with `\/` or `\*`/);
  assert.equal(await page.locator('#retention-return-value').getAttribute('aria-invalid'), 'true');
  state.retention = true;
});

test('goals: conversions, rates and sources of goals made through the API, and goals added in the editor', async () => {
  need(state.overview, 'login');
  const api = state.api;
  const report = page.locator('#goals-report');

  // The demo site has no goals: the empty state points to the editor.
  await page.click('[data-nav=goals]');
  await page.waitForFunction(() => location.hash === '#/goals');
  await report.locator('.state', { hasText: 'No goals yet' }).waitFor({ timeout: 10_000 });
  await page.click('#goals-empty-add');
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'goal-id', '"Add a goal" goes to the editor');

  // Two goals through the API: PUT sends the site's other settings back unchanged.
  const sitePath = `/api/v1/sites/${GOALS.site}`;
  const site = await api.get(sitePath);
  const { name, allowed_origins, page_rules, intent_half_life_days, icp, chat } = site;
  const saved = await api.data('PUT', sitePath, { name, allowed_origins, page_rules, intent_half_life_days, icp, chat, goals: GOALS.goals });
  assert.deepEqual(saved.goals, GOALS.goals);
  const goalsApi = `/api/v1/analytics/goals?site_id=${GOALS.site}`;
  await poll('the goal visitors to be processed', async () => {
    const data = await api.get(goalsApi);
    return data.visitors === 3 && data.goals.map((g) => g.conversions).join() === '2,1' ? data : undefined;
  }, { timeout: 30_000, describe: () => api.get(goalsApi) });

  await page.selectOption('#site-select', GOALS.site);
  const row = (goalName) => report.locator('tbody tr', { hasText: goalName });
  const figures = async (goalName) => {
    const tr = row(goalName);
    await tr.waitFor({ timeout: 10_000 });
    const text = async (cls) => (await tr.locator(cls).textContent()).replace(/\s+/g, ' ').trim();
    return {
      match: await text('.goal-match'),
      conversions: await text('.goal-conversions'),
      rate: await text('.goal-rate'),
      events: await text('.goal-events'),
      sources: await tr.locator('.goal-sources .chip').evaluateAll((chips) => chips.map((c) => `${c.dataset.source}=${c.dataset.count}`)),
    };
  };
  assert.deepEqual(await figures('Thank-you page'), { match: 'page /thanks*', conversions: '2', rate: '66.7%', events: '3', sources: ['google.com=1', 'newsletter=1'] });
  assert.deepEqual(await figures('Team signup'), { match: 'event signup where plan = "team"', conversions: '1', rate: '33.3%', events: '1', sources: ['newsletter=1'] });
  assert.equal(await report.locator('tbody tr').count(), 2, 'one row per goal');
  assert.equal((await page.locator('[data-kpi=goal_visitors] .kpi-value').textContent()).trim(), '3');
  assert.equal((await page.locator('[data-kpi=goal_best] .kpi-value').textContent()).trim(), '66.7%');
  await page.locator('#goals-chart [data-chart=goals] svg path.line').nth(1).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#goals-chart [data-chart=goals] svg path.line').count(), 2, 'a line per goal with conversions');
  await page.screenshot({ path: screenshotPath('dashboard-goals.png'), fullPage: true });

  // The editor lists both goals; a page glob without its slash gets the server's 422 message at
  // the pattern field, and nothing is saved.
  const editor = page.locator('#goals-editor');
  assert.equal(await editor.locator('#goals-list tbody tr').count(), 2);
  await page.fill('#goal-id', 'pricing');
  await page.fill('#goal-name', 'Pricing page');
  await page.selectOption('#goal-kind', 'page');
  await page.fill('#goal-pattern', 'pricing');
  await page.click('#goal-add');
  const patternError = page.locator('#goal-pattern-error');
  await patternError.filter({ hasText: /./ }).waitFor({ timeout: 10_000 });
  assert.equal(await patternError.textContent(), 'a page glob starts with `/` or `*` and is 1–256 bytes');
  assert.equal(await page.locator('#goal-pattern').getAttribute('aria-invalid'), 'true');
  assert.equal(await page.locator('#goal-id').getAttribute('aria-invalid'), null, 'only the field at fault is marked');
  assert.match(await page.locator('#goal-error').textContent(), /see the messages next to them/);
  assert.deepEqual((await api.get(sitePath)).goals.map((g) => g.goal_id), ['thanks', 'team'], 'a refused goal is not saved');
  await page.screenshot({ path: screenshotPath('dashboard-goals-error.png'), fullPage: true });

  // Corrected, it is saved and the report shows it: only goals-3 saw /pricing.
  await page.fill('#goal-pattern', '/pricing');
  assert.equal(await patternError.textContent(), '', 'typing clears the message');
  await page.click('#goal-add');
  await page.locator('#goal-notice', { hasText: 'Goal "Pricing page" added.' }).waitFor({ timeout: 10_000 });
  assert.deepEqual(await figures('Pricing page'), { match: 'page /pricing', conversions: '1', rate: '33.3%', events: '1', sources: ['(direct)=1'] });
  assert.equal(await page.inputValue('#goal-id'), '', 'the form is emptied for the next goal');

  // A custom event with a number condition: seats = 3 matches goals-2's 3, not goals-1's "3".
  await page.fill('#goal-id', 'seats3');
  await page.fill('#goal-name', 'Three seats');
  await page.selectOption('#goal-kind', 'event');
  await page.fill('#goal-event', 'signup');
  await page.fill('#goal-prop-key', 'seats');
  await page.selectOption('#goal-prop-type', 'number');
  await page.fill('#goal-prop-value', '3');
  await page.click('#goal-add');
  assert.deepEqual(await figures('Three seats'), { match: 'event signup where seats = 3', conversions: '1', rate: '33.3%', events: '1', sources: ['google.com=1'] });
  assert.equal(await report.locator('tbody tr').count(), 4);
  const stored = (await api.get(sitePath)).goals;
  assert.deepEqual(stored.map((g) => g.goal_id), ['thanks', 'team', 'pricing', 'seats3']);
  assert.deepEqual(stored[3].match, { kind: 'event', name: 'signup', property: { key: 'seats', value: 3 } }, 'the value is sent as a number');
  assert.equal((await api.get(sitePath)).chat.greeting, chat.greeting, 'the editor sends the other settings back');
  await page.screenshot({ path: screenshotPath('dashboard-goals-added.png'), fullPage: true });

  // Removing a goal drops it from the site and the report.
  await editor.locator('.goal-remove[data-goal=pricing]').click();
  await page.locator('#goal-notice', { hasText: 'Goal "Pricing page" removed.' }).waitFor({ timeout: 10_000 });
  await row('Pricing page').waitFor({ state: 'detached', timeout: 10_000 });
  assert.equal(await report.locator('tbody tr').count(), 3);
  assert.deepEqual((await api.get(sitePath)).goals.map((g) => g.goal_id), ['thanks', 'team', 'seats3']);

  await page.selectOption('#site-select', SITE);
  await report.locator('.state', { hasText: 'No goals yet' }).waitFor({ timeout: 10_000 });
  state.goals = true;
});

/** Makes every API request that carries the current access token carry a broken one instead. */
async function invalidateAccessToken() {
  let stale = null;
  const handler = (route) => {
    const headers = route.request().headers();
    if (headers.authorization && !route.request().url().includes('/api/v1/auth/')) {
      stale ||= headers.authorization;
      if (headers.authorization === stale) return route.continue({ headers: { ...headers, authorization: `${stale}x` } });
    }
    return route.continue();
  };
  await context.route('**/api/v1/**', handler);
  return () => context.unroute('**/api/v1/**', handler);
}

test('an invalid access token refreshes once for concurrent calls, or goes back to login', async () => {
  need(state.overview, 'login');
  const before = state.refreshRequests;
  const storedBefore = await page.evaluate(() => sessionStorage.getItem('crm.dashboard.refresh_token'));
  const restore = await invalidateAccessToken();
  await page.click('[data-nav=overview]'); // several API calls at once, all answered 401
  if (state.refreshTokens) {
    assert.ok(storedBefore, 'the refresh token is kept in sessionStorage');
    await page.locator('[data-kpi=visitors] .kpi-value').waitFor({ timeout: 15_000 });
    assert.equal(state.refreshRequests - before, 1, 'concurrent 401s share one refresh');
    const storedAfter = await page.evaluate(() => sessionStorage.getItem('crm.dashboard.refresh_token'));
    assert.ok(storedAfter && storedAfter !== storedBefore, 'the rotated refresh token replaced the old one');
    assert.equal(await page.locator('#login-username').count(), 0, 'still signed in');
  } else {
    await page.locator('#login-error', { hasText: /session has expired/i }).waitFor({ timeout: 15_000 });
  }
  await restore();
  await page.screenshot({ path: screenshotPath('dashboard-session.png') });
  state.session = true;
});

/** Signs in when the form is shown; the app then returns to the screen it was on. */
async function signInIfAsked() {
  const form = page.locator('#login-username');
  if (await form.count()) {
    await page.fill('#login-username', 'admin');
    await page.fill('#login-password', crm.password);
    await page.click('.login-form button[type=submit]');
  }
  await page.locator('.layout .view').waitFor({ timeout: 15_000 });
}

test('reload keeps the session through the refresh token; a bad one and logout end it', async () => {
  need(state.session, 'the session test');
  await signInIfAsked();
  await page.reload();
  if (state.refreshTokens) {
    await page.locator('[data-kpi=visitors] .kpi-value').waitFor({ timeout: 15_000 });
    // A refresh token the server does not know: the next 401 ends the session.
    await page.evaluate(() => sessionStorage.setItem('crm.dashboard.refresh_token', 'not-a-refresh-token'));
    const restore = await invalidateAccessToken();
    await page.click('[data-nav=leads]');
    await page.locator('#login-error', { hasText: /session has expired/i }).waitFor({ timeout: 15_000 });
    await restore();
  } else {
    await page.locator('#login-username').waitFor({ timeout: 15_000 });
  }
  await signInIfAsked();
  const refreshToken = await page.evaluate(() => sessionStorage.getItem('crm.dashboard.refresh_token'));
  await page.click('#logout');
  await page.locator('#login-username').waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('crm.dashboard.refresh_token')), null, 'logout forgets the refresh token');
  if (state.refreshTokens) {
    const res = await fetch(`${crm.url}/api/v1/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refresh_token: refreshToken }) });
    assert.equal(res.status, 401, 'the server revoked the refresh token at logout');
  }
  assert.deepEqual(state.pageErrors, [], 'no uncaught errors in the page');
});

test('the layout holds on a phone-sized screen', async () => {
  need(state.overview, 'login');
  const phone = await dashboardContext({ width: 390, height: 844 });
  const small = await phone.newPage();
  await small.goto(`${crm.url}/`);
  await small.fill('#login-username', 'admin');
  await small.fill('#login-password', crm.password);
  await small.click('.login-form button[type=submit]');
  await small.locator('[data-chart=top_pages] .bar-row').first().waitFor({ timeout: 15_000 });
  const overflow = await small.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 1, `the page scrolls sideways by ${overflow}px`);
  await small.screenshot({ path: screenshotPath('dashboard-overview-phone.png'), fullPage: true });
  await phone.close();
});

test('a sales rep sees leads but not accounts & health', async (t) => {
  need(state.overview, 'login');
  if (!state.roles) {
    t.diagnostic('this server has no GET /api/v1/auth/me (roles): every screen is shown');
    return;
  }
  const repContext = await dashboardContext({ width: 1280, height: 800 });
  const repPage = await repContext.newPage();
  await repPage.goto(`${crm.url}/#/accounts`);
  await repPage.fill('#login-username', 'e2e-rep');
  await repPage.fill('#login-password', 'e2e-rep-password');
  await repPage.click('.login-form button[type=submit]');
  await repPage.locator('.state', { hasText: 'Not available for your role' }).waitFor({ timeout: 15_000 });
  assert.equal(await repPage.locator('[data-nav=accounts]').count(), 0, 'no accounts & health link');
  assert.equal(await repPage.locator('[data-nav=funnels]').count(), 1, 'analytics readers see funnels');
  // Goals: the report, but no editor (the rep cannot manage sites).
  await repPage.click('[data-nav=goals]');
  await repPage.locator('#goals-report .state', { hasText: 'An admin defines the goals' }).waitFor({ timeout: 10_000 });
  assert.equal(await repPage.locator('#goals-editor, #goals-empty-add').count(), 0, 'no goals editor for a sales rep');
  await repPage.click('[data-nav=leads]');
  await repPage.locator('#leads-panel tbody tr').first().waitFor({ timeout: 10_000 });
  await repContext.close();
});

// Last: the lockout also locks this client address for every username for 30 s.
test('repeated failed logins show the rate limit and its wait', async (t) => {
  need(state.overview, 'login');
  if (!state.refreshTokens) {
    t.diagnostic('this server has no login lockout (it predates refresh tokens): nothing to check');
    return;
  }
  const fresh = await dashboardContext({ width: 1280, height: 800 }); // no session in it
  const page = await fresh.newPage();
  await page.goto(`${crm.url}/`);
  await page.locator('#login-username').waitFor({ timeout: 10_000 });
  let shown = '';
  for (let attempt = 1; attempt <= 6 && !/rate limited/i.test(shown); attempt++) {
    await page.fill('#login-username', 'e2e-nobody');
    await page.fill('#login-password', `wrong-${attempt}`);
    await page.click('.login-form button[type=submit]');
    await page.waitForFunction(() => !document.querySelector('.login-form button[type=submit]').disabled);
    shown = await page.locator('#login-error').textContent();
  }
  assert.match(shown, /^Rate limited, retry in \d+ s$/, 'a locked login shows the wait from Retry-After');
  await page.screenshot({ path: screenshotPath('dashboard-rate-limited.png') });
  await fresh.close();
});
