// Acceptance test of tracking.js: one visitor's journey through the demo site in a real browser,
// checked through the CRM API (what was stored), not through the requests the page made.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { poll } from './lib/api.mjs';
import { newContext, recordBeacons, setPageHidden, waitForTag } from './lib/browser.mjs';
import { screenshotPath, sleep } from './lib/env.mjs';
import { startStack } from './lib/stack.mjs';

const SITE = 'e2e-tracking';
const LANDING_QUERY = '?utm_source=newsletter&utm_campaign=q4&gclid=abc';
const EXTERNAL_REFERRER = 'https://news.example.com/weekly-digest';
const OUTBOUND = 'https://community.example.org/orbitdesk';
const HIDDEN_MS = 3_500;

let stack;
let journey; // what the browser did, with the test's own clock readings
let events; // the visitor's stored timeline, oldest first

before(async () => {
  stack = await startStack({ siteId: SITE, siteName: 'Widget e2e: tracking' });
});

after(async () => {
  await stack?.stop();
});

/** Engaged time must match the wall time the page was visible: ±1.5 s or ±40 %, whichever is larger. */
function assertAbout(actual, expected, what) {
  const tolerance = Math.max(1_500, expected * 0.4);
  assert.ok(Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual} ms stored, ${expected} ms measured by the test (tolerance ±${Math.round(tolerance)} ms)`);
}

/** Scrolls with the mouse wheel (real scroll events) until the page's bottom is in view. */
async function wheelToBottom(page) {
  await page.mouse.move(640, 400);
  for (let i = 0; i < 60; i++) {
    const atBottom = await page.evaluate(() => scrollY + innerHeight >= document.documentElement.scrollHeight - 1);
    if (atBottom) return;
    await page.mouse.wheel(0, 500);
    await sleep(60);
  }
  throw new Error('could not scroll to the bottom of the page');
}

/** Scrolls so that exactly `fraction` of the document height has been in view. */
async function wheelToFraction(page, fraction) {
  await page.mouse.move(640, 400);
  const target = await page.evaluate((f) => Math.round(f * document.documentElement.scrollHeight - innerHeight), fraction);
  for (let i = 0; i < 60 && (await page.evaluate(() => scrollY)) + 400 < target; i++) {
    await page.mouse.wheel(0, 400);
    await sleep(60);
  }
  await page.evaluate((y) => window.scrollTo(0, y), target); // the last few pixels exactly
  await sleep(100);
  return page.evaluate(() => Math.round((scrollY + innerHeight) * 100 / document.documentElement.scrollHeight));
}

/** Keeps the user "active" (mouse moves) for `ms`, as a reader would be. */
async function readFor(page, ms) {
  const end = Date.now() + ms;
  for (let x = 300; Date.now() < end; x = x === 300 ? 320 : 300) {
    await page.mouse.move(x, 300);
    await sleep(Math.min(250, Math.max(0, end - Date.now())));
  }
}

test('visitor journey: landing with UTMs, scroll, clicks, SPA routes, hidden tab, close', async () => {
  const { browser, web, api, crm } = stack;
  const context = await newContext(browser);
  // The outbound link opens a new tab; answer it locally instead of going to the internet.
  await context.route(`${OUTBOUND}**`, (route) => route.fulfill({ contentType: 'text/html', body: '<title>Community</title>' }));
  const requests = recordBeacons(context, crm.url);
  const page = await context.newPage();
  const t = {};

  // Home page, arriving from a newsletter link.
  t.index = Date.now();
  await page.goto(web.url('/index.html' + LANDING_QUERY), { referer: EXTERNAL_REFERRER });
  await waitForTag(page);
  const visitorId = await page.evaluate(() => localStorage.getItem('crm_vid'));
  assert.match(visitorId || '', /^[0-9a-f-]{36}$/, 'the tag stores a UUID visitor id in localStorage.crm_vid');
  await page.screenshot({ path: screenshotPath('home.png') });
  await wheelToBottom(page);
  const [popup] = await Promise.all([context.waitForEvent('page'), page.click('#community-link')]);
  await popup.close();
  await page.click('#sales-mail'); // mailto: goes to the external handler; the page stays
  await page.click('#start-trial'); // data-crm-event="cta_clicked"
  await readFor(page, 1_500);

  // Pricing, through the header link; read the first half.
  t.pricing = Date.now();
  await Promise.all([page.waitForURL('**/pricing.html'), page.click('header a[href="/pricing.html"]')]);
  await waitForTag(page);
  const pricingDepth = await wheelToFraction(page, 0.5);
  assert.equal(pricingDepth, 50, 'the test scrolled pricing.html to 50 %');
  await readFor(page, 1_500);

  // The single-page app: two client-side routes, then the browser's back button.
  t.app = Date.now();
  await Promise.all([page.waitForURL('**/app/'), page.click('header a[href="/app/"]')]);
  await waitForTag(page);
  await readFor(page, 800);
  await page.click('.app-nav a[href="/app/dashboard"]');
  await page.waitForURL('**/app/dashboard');
  await readFor(page, 800);
  await page.click('.app-nav a[href="/app/settings"]');
  await page.waitForURL('**/app/settings');
  await readFor(page, 800);
  await page.goBack(); // popstate
  await page.waitForURL('**/app/dashboard');
  t.back = Date.now();
  assert.equal(await page.locator('#view h1').textContent(), 'Dashboard', 'popstate rendered the dashboard again');
  await page.screenshot({ path: screenshotPath('spa-dashboard.png') });
  await readFor(page, 1_200);

  // Switch to another tab for a while, come back, read on, close the tab.
  t.hidden = Date.now();
  await setPageHidden(page, true);
  await sleep(HIDDEN_MS);
  t.shown = Date.now();
  await setPageHidden(page, false);
  await readFor(page, 1_800);
  t.close = Date.now();
  await page.close({ runBeforeUnload: true });
  journey = { visitorId, t, requests };

  const describe = async () => ({
    visitors: await api.visitors(SITE),
    events: (await api.events(SITE, visitorId)).map(summarize),
    dead_letters: await api.get(`/api/v1/dead-letters?site_id=${SITE}`),
  });
  // The engagement beacon sent while the tab closed is the last event we expect.
  await poll('the engagement sent when the page closed', async () => {
    const all = await api.events(SITE, visitorId);
    return all.some((e) => e.type === 'engagement' && e.ts_ms >= t.close) && all.filter((e) => e.type === 'pageview').length >= 6;
  }, { describe });
  await sleep(1_000); // anything else sent at close time (it should be nothing) arrives too
  events = await api.events(SITE, visitorId);
  await context.close();
});

// The checks below read what the journey stored; each reports separately.
function requireJourney() {
  assert.ok(events, 'the journey did not complete (see the failure above)');
  return { ...journey, events };
}

/** One line per stored event, for failure messages. */
function summarize(e) {
  const detail = e.type === 'engagement' ? `scroll ${e.scroll_depth} engaged ${e.engaged_ms}`
    : e.type === 'click' ? JSON.stringify(e.target)
      : e.type === 'custom' ? e.name : (e.referrer ?? '');
  return `${e.ts_ms} ${e.type} ${e.path} ${detail}`;
}

const pageviewsOf = (all) => all.filter((e) => e.type === 'pageview');

/** Engagement events grouped by the pageview they measure (same URL, latest pageview at or before). */
function engagementByPageview(all) {
  const views = pageviewsOf(all).map((view) => ({ view, engagements: [] }));
  for (const e of all.filter((x) => x.type === 'engagement')) {
    const owner = views.filter(({ view }) => view.url === e.url && view.ts_ms <= e.ts_ms).pop();
    assert.ok(owner, `engagement at ${e.ts_ms} for ${e.url} matches no earlier pageview of that URL`);
    owner.engagements.push(e);
  }
  return views.map(({ view, engagements }) => ({
    path: view.path,
    ts: view.ts_ms,
    engagements,
    maxScroll: Math.max(0, ...engagements.map((e) => e.scroll_depth)),
    engagedMs: engagements.reduce((sum, e) => sum + e.engaged_ms, 0),
  }));
}

test('pageviews: order, paths, referrer chain, UTM props on the landing page', () => {
  const { events: all } = requireJourney();
  const views = pageviewsOf(all);
  const origin = stack.web.origin;
  assert.deepEqual(views.map((v) => v.path),
    ['/index.html', '/pricing.html', '/app/', '/app/dashboard', '/app/settings', '/app/dashboard'],
    'six pageviews: two pages, the app, two client-side routes and the popstate back');
  assert.deepEqual(views.map((v) => v.referrer), [
    EXTERNAL_REFERRER,
    `${origin}/index.html${LANDING_QUERY}`,
    `${origin}/pricing.html`,
    `${origin}/app/`,
    `${origin}/app/dashboard`,
    `${origin}/app/settings`,
  ], 'referrer: the external page first, then the previous page or route');
  assert.deepEqual(views[0].props, { utm_source: 'newsletter', utm_campaign: 'q4', gclid: 'abc' });
  assert.deepEqual(views.slice(1).map((v) => v.props), [undefined, undefined, undefined, undefined, undefined],
    'only the landing URL had campaign parameters');
  assert.equal(views[0].url, `${origin}/index.html${LANDING_QUERY}`);
  assert.equal(views[0].title, 'Orbitdesk · Revenue intelligence for B2B teams');
  assert.equal(new Set(all.map((e) => e.client_session_id)).size, 1, 'one browser session id throughout');
});

test('visitor profile and analytics overview', async () => {
  const { visitorId } = requireJourney();
  const { api } = stack;
  const visitors = await api.visitors(SITE);
  assert.deepEqual(visitors.map((v) => v.visitor_id), [visitorId], 'exactly one (non-bot) visitor: the id in localStorage');
  const profile = await api.visitor(SITE, visitorId);
  assert.equal(profile.pageviews, 6);
  assert.equal(profile.visits, 1);
  assert.equal(profile.is_bot, false);
  assert.equal(profile.landing_page, '/index.html');
  assert.equal(profile.first_referrer, 'news.example.com');
  assert.deepEqual(profile.first_utm, { source: 'newsletter', campaign: 'q4' });
  assert.ok(profile.intent_signals.pricing >= 1, `pricing intent signal credited: ${JSON.stringify(profile.intent_signals)}`);
  assert.equal(profile.last_session.pageviews, 6);
  assert.equal(profile.last_session.max_scroll, 100);

  const { overview } = await api.get(`/api/v1/analytics/overview?site_id=${SITE}`);
  assert.equal(overview.visitors, 1);
  assert.equal(overview.sessions, 1);
  assert.equal(overview.pageviews, 6);
  assert.deepEqual(overview.top_pages.find((p) => p.key === '/app/dashboard'), { key: '/app/dashboard', count: 2 });
  assert.deepEqual(overview.utm_sources, [{ key: 'newsletter', count: 1 }]);

  const deadLetters = await api.get(`/api/v1/dead-letters?site_id=${SITE}`);
  assert.deepEqual(deadLetters, [], 'the collector refused nothing the tag sent');
});

test('clicks: outbound link, mailto, CTA with data-crm-event, navigation links', () => {
  const { events: all } = requireJourney();
  const origin = stack.web.origin;
  const clicks = all.filter((e) => e.type === 'click').map((e) => ({ path: e.path, ...e.target }));
  assert.deepEqual(clicks, [
    { path: '/index.html', text: 'Join the community forum', selector: 'a#community-link', outbound: true, href: OUTBOUND },
    { path: '/index.html', text: 'sales@orbitdesk.example', selector: 'a#sales-mail', outbound: true, href: 'mailto:sales@orbitdesk.example' },
    { path: '/index.html', text: 'Start free trial', selector: 'button#start-trial', outbound: false },
    { path: '/index.html', text: 'Pricing', selector: 'a.nav-link', outbound: false, href: `${origin}/pricing.html` },
    { path: '/pricing.html', text: 'Open the app', selector: 'a.nav-link', outbound: false, href: `${origin}/app/` },
    { path: '/app/', text: 'Dashboard', selector: 'a', outbound: false, href: `${origin}/app/dashboard` },
    { path: '/app/dashboard', text: 'Settings', selector: 'a', outbound: false, href: `${origin}/app/settings` },
  ]);
  const custom = all.filter((e) => e.type === 'custom').map((e) => ({ name: e.name, path: e.path }));
  assert.deepEqual(custom, [{ name: 'cta_clicked', path: '/index.html' }], 'data-crm-event sends one custom event');
});

test('scroll depth per page', () => {
  const { events: all } = requireJourney();
  const pages = engagementByPageview(all);
  assert.equal(pages[0].maxScroll, 100, 'index.html was read to the bottom');
  assert.ok(Math.abs(pages[1].maxScroll - 50) <= 2, `pricing.html was read halfway: max scroll_depth ${pages[1].maxScroll}`);
  for (const p of pages) assert.ok(p.engagements.length >= 1, `an engagement event for the pageview of ${p.path} at ${p.ts}`);
});

test('engaged time follows the visible time and leaves out the hidden tab', () => {
  const { events: all, t } = requireJourney();
  const pages = engagementByPageview(all);
  assertAbout(pages[0].engagedMs, t.pricing - t.index, 'index.html');
  assertAbout(pages[1].engagedMs, t.app - t.pricing, 'pricing.html');
  assertAbout(pages.slice(2, 5).reduce((sum, p) => sum + p.engagedMs, 0), t.back - t.app, 'app, dashboard, settings');

  const last = pages[5];
  const visible = (t.hidden - t.back) + (t.close - t.shown);
  const hidden = t.shown - t.hidden;
  assert.ok(hidden >= 3_000, `the tab was hidden for ${hidden} ms`);
  assertAbout(last.engagedMs, visible, 'dashboard after going back (visible time only)');
  assert.ok(last.engagedMs < visible + hidden - 1_500,
    `hidden time must not count: ${last.engagedMs} ms engaged, ${visible} ms visible + ${hidden} ms hidden`);
  // Engagement sent when the tab was hidden, and when it was closed.
  const atHide = last.engagements.filter((e) => e.ts_ms >= t.hidden && e.ts_ms < t.shown);
  const atClose = last.engagements.filter((e) => e.ts_ms >= t.close);
  assert.equal(atHide.length, 1, 'one engagement event sent when the tab was hidden');
  assert.ok(atClose.length >= 1, 'an engagement event sent when the page closed');
  assertAbout(atHide[0].engaged_ms, t.hidden - t.back, 'engagement sent on hide');
  assertAbout(atClose.reduce((sum, e) => sum + e.engaged_ms, 0), t.close - t.shown, 'engagement sent on close');
});

test('one engagement event per page exit (no second beacon right after pagehide)', () => {
  const { events: all } = requireJourney();
  const pages = engagementByPageview(all);
  // Leaving a page (link, route change, popstate, close) sends one engagement; hiding the tab
  // sends one more for the last page. A page whose exit produced two shows them here.
  assert.deepEqual(
    pages.map((p) => p.engagements.length),
    [1, 1, 1, 1, 1, 2],
    'engagement events per pageview:\n' + pages.map((p) => `  ${p.path}: ${p.engagements.map((e) => `ts ${e.ts_ms} engaged_ms ${e.engaged_ms} scroll ${e.scroll_depth}`).join(' | ')}`).join('\n'),
  );
});

test('beacons: hidden-tab and close-time engagement use sendBeacon with a text/plain body', () => {
  const { events: all, t, requests } = requireJourney();
  // The request at hide time is visible to the test: a beacon ("ping"), text/plain, no preflight.
  const onHide = requests.filter((r) => r.at >= t.hidden && r.at < t.shown);
  assert.ok(onHide.length >= 1, `a request while the tab was hidden: ${JSON.stringify(requests.map((r) => [r.at, r.resourceType]))}`);
  for (const r of onHide) {
    assert.equal(r.resourceType, 'ping', 'sent with navigator.sendBeacon');
    assert.equal(r.method, 'POST');
    assert.equal(r.contentType, 'text/plain;charset=UTF-8');
  }
  assert.ok(onHide.some((r) => r.events.some((e) => e.type === 'engagement')), 'the hide-time request carried the engagement');
  // The close-time request outlives the page (the test can no longer observe it): that it was
  // stored, received after the close began, shows it was a beacon / keepalive request.
  const atClose = all.find((e) => e.type === 'engagement' && e.ts_ms >= t.close);
  assert.ok(atClose, 'close-time engagement stored');
  assert.ok(atClose.received_at_ms >= t.close, 'received after the page started closing');
  assert.equal(atClose.path, '/app/dashboard');
});

test('without data-consent: crm(\'consent\', false) stops tracking and deletes the ids, true resumes with new ones', async () => {
  const { browser, web, api, crm } = stack;
  const context = await newContext(browser);
  const requests = recordBeacons(context, crm.url);
  const page = await context.newPage();
  const storage = () => page.evaluate(() => ({ cookie: document.cookie, localStorage: { ...localStorage }, sessionStorage: Object.keys(sessionStorage) }));
  const sentSince = (t) => requests.filter((r) => r.at >= t).flatMap((r) => r.events);

  await page.goto(web.url('/app/'));
  await waitForTag(page);
  const tracked = await storage();
  assert.deepEqual(Object.keys(tracked.localStorage), ['crm_vid'], 'the visitor id only: no consent is stored without data-consent');
  assert.match(tracked.localStorage.crm_vid, /^[0-9a-f-]{36}$/);
  assert.deepEqual(tracked.sessionStorage, ['crm_sid']);
  await sleep(1_200);

  // Opt-out: the ids are deleted at once, and nothing is stored or sent afterwards.
  const nothing = { cookie: '', localStorage: {}, sessionStorage: [] };
  const off = Date.now();
  await page.evaluate(() => window.crm('consent', false));
  assert.deepEqual(await storage(), nothing, 'opt-out deletes the ids');
  await page.click('.app-nav a[href="/app/dashboard"]');
  await page.waitForURL('**/app/dashboard');
  await page.mouse.wheel(0, 400);
  await sleep(1_200);
  assert.deepEqual(await storage(), nothing, 'nothing stored while opted out');
  assert.deepEqual(sentSince(off).map((e) => e.type), [], 'nothing sent while opted out');

  // Resume: a new visitor id, and a pageview for the current page under it.
  const on = Date.now();
  await page.evaluate(() => window.crm('consent', true));
  const resumed = await storage();
  assert.deepEqual(Object.keys(resumed.localStorage), ['crm_vid']);
  assert.match(resumed.localStorage.crm_vid, /^[0-9a-f-]{36}$/);
  assert.notEqual(resumed.localStorage.crm_vid, tracked.localStorage.crm_vid, 'a new visitor id after the opt-out');
  await sleep(1_200);
  assert.deepEqual(sentSince(on).map((e) => [e.type, new URL(e.url).pathname, e.visitor_id]),
    [['pageview', '/app/dashboard', resumed.localStorage.crm_vid]], 'resuming sends one pageview, with the new id');
  await page.close({ runBeforeUnload: true });
  await context.close();

  const timeline = await poll('the pageview sent on resume', async () => {
    const all = await api.events(SITE, resumed.localStorage.crm_vid);
    return all.some((e) => e.type === 'pageview') && all;
  });
  assert.deepEqual(timeline.filter((e) => e.type === 'pageview').map((e) => e.path), ['/app/dashboard']);
  assert.deepEqual((await api.events(SITE, tracked.localStorage.crm_vid)).filter((e) => e.ts_ms >= off).map((e) => e.type), [],
    'nothing stored for the first id after the opt-out');
});
