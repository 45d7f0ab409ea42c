// Cookieless mode (data-cookieless): the tag stores nothing in the browser and sends no ids; the
// collector derives one visitor id per (day, site, IP, user agent), so separate page loads, even
// from fresh browser contexts, still add up to one visitor.
// Consent mode (data-consent): cookieless until crm('consent', true); then the tag stores its ids
// (and the consent, which later page loads remember) and sends them; crm('consent', false)
// deletes all of it and the tag is cookieless again.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { poll } from './lib/api.mjs';
import { newContext, recordBeacons, waitForTag } from './lib/browser.mjs';
import { sleep } from './lib/env.mjs';
import { startStack } from './lib/stack.mjs';

const SITE = 'e2e-cookieless';
const CONSENT_SITE = 'e2e-consent';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let stack;
let consentStack;

before(async () => {
  stack = await startStack({ siteId: SITE, siteName: 'Widget e2e: cookieless', tagAttrs: ' data-cookieless' });
  consentStack = await startStack({ siteId: CONSENT_SITE, siteName: 'Widget e2e: consent', tagAttrs: ' data-consent' });
});

after(async () => {
  await stack?.stop();
  await consentStack?.stop();
});

/** What the page keeps in the browser: cookies, localStorage, sessionStorage. */
async function assertNothingStored(page, context, where) {
  await waitForTag(page);
  const stored = await page.evaluate(() => ({
    cookie: document.cookie,
    localStorage: Object.keys(localStorage),
    sessionStorage: Object.keys(sessionStorage),
    lengths: [localStorage.length, sessionStorage.length],
  }));
  assert.doesNotMatch(stored.cookie, /crm_/, `${where}: no crm_ cookie`);
  assert.deepEqual(stored, { cookie: '', localStorage: [], sessionStorage: [], lengths: [0, 0] }, `${where}: nothing stored by the page`);
  assert.deepEqual(await context.cookies(), [], `${where}: the browser context holds no cookies`);
}

test('cookieless: nothing stored, no ids sent, one server-derived visitor across contexts', async () => {
  const { browser, web, api, crm } = stack;
  const sent = [];

  // First browser profile: three page loads and a client-side route.
  const first = await newContext(browser);
  sent.push(recordBeacons(first, crm.url));
  const page = await first.newPage();
  await page.goto(web.url('/index.html'));
  await assertNothingStored(page, first, 'index.html');
  await page.mouse.wheel(0, 800);
  await sleep(1_200);
  await Promise.all([page.waitForURL('**/pricing.html'), page.click('header a[href="/pricing.html"]')]);
  await assertNothingStored(page, first, 'pricing.html');
  await sleep(1_200);
  await Promise.all([page.waitForURL('**/app/'), page.click('header a[href="/app/"]')]);
  await assertNothingStored(page, first, 'app');
  await page.click('.app-nav a[href="/app/dashboard"]');
  await page.waitForURL('**/app/dashboard');
  await sleep(1_200); // let the batch go out while the page is alive, so the test sees it
  await assertNothingStored(page, first, 'app/dashboard');
  await page.close({ runBeforeUnload: true });
  await first.close();

  // A second, fresh profile: same IP and user agent, no shared storage.
  const second = await newContext(browser);
  sent.push(recordBeacons(second, crm.url));
  const other = await second.newPage();
  await other.goto(web.url('/docs/'));
  await assertNothingStored(other, second, 'docs (second context)');
  await sleep(1_200);
  await other.close({ runBeforeUnload: true });
  await second.close();

  // No request carried an id.
  const requests = sent.flat();
  const events = requests.flatMap((r) => r.events);
  // (Each page stayed open > 1 s, so its pageview went out with fetch while the test could see it.)
  assert.ok(events.filter((e) => e.type === 'pageview').length >= 5, `the test saw the pageviews go out: ${JSON.stringify(events.map((e) => e.type))}`);
  const withIds = events.filter((e) => 'visitor_id' in e || 'session_id' in e);
  assert.deepEqual(withIds, [], 'cookieless events carry no visitor_id / session_id');

  // The server saw one visitor with all five pageviews.
  const describe = async () => ({ visitors: await api.visitors(SITE), dead_letters: await api.get(`/api/v1/dead-letters?site_id=${SITE}`) });
  const visitors = await poll('five pageviews from the cookieless visitor', async () => {
    const list = await api.visitors(SITE);
    return list.reduce((sum, v) => sum + v.pageviews, 0) >= 5 && list;
  }, { describe });
  assert.equal(visitors.length, 1, `one visitor, not one per context: ${JSON.stringify(visitors.map((v) => [v.visitor_id, v.pageviews]))}`);
  const [visitor] = visitors;
  assert.match(visitor.visitor_id, /^cl-[0-9a-f]{32}$/, 'a server-derived cookieless id');
  assert.equal(visitor.pageviews, 5);
  assert.equal(visitor.is_bot, false);

  const timeline = await api.events(SITE, visitor.visitor_id);
  assert.deepEqual(timeline.filter((e) => e.type === 'pageview').map((e) => e.path),
    ['/index.html', '/pricing.html', '/app/', '/app/dashboard', '/docs/']);
  assert.deepEqual(timeline.filter((e) => e.client_session_id !== undefined), [], 'no client session id was stored');
});

/** What the tag keeps in the browser after consent: the ids, the consent, no cookie. */
async function storedIds(page, context, where) {
  await waitForTag(page);
  const stored = await page.evaluate(() => ({
    cookie: document.cookie,
    localStorage: { ...localStorage },
    sessionStorage: { ...sessionStorage },
  }));
  assert.deepEqual(Object.keys(stored.localStorage).sort(), ['crm_consent', 'crm_vid'], `${where}: localStorage holds the visitor id and the consent`);
  assert.equal(stored.localStorage.crm_consent, '1', `${where}: consent remembered`);
  assert.match(stored.localStorage.crm_vid, UUID, `${where}: a UUID visitor id`);
  assert.deepEqual(Object.keys(stored.sessionStorage), ['crm_sid'], `${where}: sessionStorage holds the session id`);
  const [sid, lastActivity] = stored.sessionStorage.crm_sid.split('|');
  assert.match(sid, UUID, `${where}: a UUID session id`);
  assert.match(lastActivity, /^\d{13}$/, `${where}: the session's last activity`);
  assert.equal(stored.cookie, '', `${where}: no cookie (localStorage works)`);
  assert.deepEqual(await context.cookies(), [], `${where}: the browser context holds no cookies`);
  return { vid: stored.localStorage.crm_vid, sid };
}

test('consent mode: cookieless until consent, ids after it (remembered on the next loads), nothing again after withdrawal', async () => {
  const { browser, web, api, crm } = consentStack;
  const EXTERNAL_REFERRER = 'https://news.example.com/consent-digest';
  const context = await newContext(browser);
  const requests = recordBeacons(context, crm.url);
  const page = await context.newPage();
  const t = {};

  // Before consent: two page loads with a scroll, a click and a custom event; nothing is stored.
  await page.goto(web.url('/pricing.html'));
  await assertNothingStored(page, context, 'pricing.html before consent');
  await page.mouse.wheel(0, 800);
  await sleep(1_200);
  await assertNothingStored(page, context, 'pricing.html after a scroll');
  await page.goto(web.url('/index.html?utm_source=consent-test&utm_campaign=banner'), { referer: EXTERNAL_REFERRER });
  await assertNothingStored(page, context, 'index.html before consent');
  await page.click('#start-trial'); // a click and the custom event cta_clicked
  await sleep(1_200); // the batch goes out while the page is alive, so the test sees it
  await assertNothingStored(page, context, 'index.html after a click');

  // Consent: the ids are stored at once, and the current page is counted again under them.
  t.consent = Date.now();
  await page.evaluate(() => window.crm('consent', true));
  const { vid, sid } = await storedIds(page, context, 'index.html right after consent');
  await sleep(1_200);
  // A new page load, a client-side route and a reload: consent is remembered, the ids stay.
  await Promise.all([page.waitForURL('**/app/'), page.click('header a[href="/app/"]')]);
  assert.deepEqual(await storedIds(page, context, 'app (next page load)'), { vid, sid });
  await page.click('.app-nav a[href="/app/dashboard"]');
  await page.waitForURL('**/app/dashboard');
  await sleep(1_200);
  await page.reload();
  assert.deepEqual(await storedIds(page, context, 'app/dashboard (reloaded)'), { vid, sid });
  await page.mouse.wheel(0, 400);
  await sleep(1_200);

  // Withdrawal: everything is deleted at once; the tag goes on without ids and stores nothing.
  t.withdraw = Date.now();
  await page.evaluate(() => window.crm('consent', false));
  await assertNothingStored(page, context, 'app/dashboard right after withdrawal');
  await page.click('.app-nav a[href="/app/settings"]');
  await page.waitForURL('**/app/settings');
  await sleep(1_200);
  await assertNothingStored(page, context, 'app/settings after withdrawal');
  await Promise.all([page.waitForURL('**/docs/'), page.click('header a[href="/docs/"]')]);
  await assertNothingStored(page, context, 'docs (next page load) after withdrawal');
  await page.evaluate(() => window.crm('consent', false)); // again: nothing to do
  await sleep(1_200);
  await assertNothingStored(page, context, 'docs after a second withdrawal');
  await page.close({ runBeforeUnload: true });
  await context.close();

  // What the page sent (requests of live pages): ids exactly between consent and withdrawal.
  const events = requests.flatMap((r) => r.events);
  const ids = (e) => [e.type, e.visitor_id, e.session_id];
  const before = events.filter((e) => e.ts < t.consent);
  const during = events.filter((e) => e.ts >= t.consent && e.ts < t.withdraw);
  const afterwards = events.filter((e) => e.ts >= t.withdraw);
  const count = (list, type) => list.filter((e) => e.type === type).length;
  assert.deepEqual(['pageview', 'click', 'custom'].map((type) => count(before, type)), [2, 1, 1],
    `the test saw the events sent before consent: ${JSON.stringify(before.map((e) => e.type))}`);
  assert.deepEqual(before.filter((e) => 'visitor_id' in e || 'session_id' in e), [], 'no ids before consent');
  assert.ok(count(during, 'pageview') >= 3, `the test saw the pageviews after consent: ${JSON.stringify(during.map(ids))}`);
  assert.deepEqual(during.filter((e) => e.visitor_id !== vid || e.session_id !== sid).map(ids), [], 'every event after consent carries the stored ids');
  assert.deepEqual(during[0] && [during[0].type, during[0].url, during[0].referrer, during[0].props],
    ['pageview', web.url('/index.html?utm_source=consent-test&utm_campaign=banner'), EXTERNAL_REFERRER, { utm_source: 'consent-test', utm_campaign: 'banner' }],
    'consent counts the current page again: its pageview, with the referrer and UTM parameters of the landing');
  assert.ok(count(afterwards, 'pageview') >= 2, `the test saw the pageviews after withdrawal: ${JSON.stringify(afterwards.map(ids))}`);
  assert.deepEqual(afterwards.filter((e) => 'visitor_id' in e || 'session_id' in e).map(ids), [], 'no ids after withdrawal');

  // The server: the consented visitor under the tag's id (with the landing attribution), and one
  // server-derived cookieless visitor for everything before consent and after withdrawal.
  const describe = async () => ({ visitors: await api.visitors(CONSENT_SITE), dead_letters: await api.get(`/api/v1/dead-letters?site_id=${CONSENT_SITE}`) });
  const visitors = await poll('the consented and the cookieless visitor', async () => {
    const list = await api.visitors(CONSENT_SITE);
    const pageviews = (v) => v?.pageviews || 0;
    return pageviews(list.find((v) => v.visitor_id === vid)) >= 4 && pageviews(list.find((v) => v.visitor_id.startsWith('cl-'))) >= 5 && list;
  }, { describe });
  assert.deepEqual(visitors.map((v) => v.visitor_id).sort(), [vid, visitors.find((v) => v.visitor_id.startsWith('cl-')).visitor_id].sort(),
    `two visitors: ${JSON.stringify(visitors.map((v) => [v.visitor_id, v.pageviews]))}`);
  const consented = await api.events(CONSENT_SITE, vid);
  assert.deepEqual(consented.filter((e) => e.type === 'pageview').map((e) => e.path),
    ['/index.html', '/app/', '/app/dashboard', '/app/dashboard'], 'pageviews with the ids: the consent page, the next load, a route, the reload');
  assert.ok(consented.every((e) => e.ts_ms >= t.consent && e.ts_ms < t.withdraw), 'the tag\'s id only on events between consent and withdrawal');
  assert.deepEqual([...new Set(consented.map((e) => e.client_session_id))], [sid], 'one session id, kept over the page loads');
  const profile = await api.visitor(CONSENT_SITE, vid);
  assert.equal(profile.landing_page, '/index.html');
  assert.equal(profile.first_referrer, 'news.example.com');
  assert.deepEqual(profile.first_utm, { source: 'consent-test', campaign: 'banner' });

  const cookieless = visitors.find((v) => v.visitor_id.startsWith('cl-'));
  assert.match(cookieless.visitor_id, /^cl-[0-9a-f]{32}$/, 'a server-derived cookieless id');
  const anonymous = await api.events(CONSENT_SITE, cookieless.visitor_id);
  assert.deepEqual(anonymous.filter((e) => e.type === 'pageview').map((e) => e.path),
    ['/pricing.html', '/index.html', '/app/dashboard', '/app/settings', '/docs/'],
    'cookieless pageviews: the two loads before consent; after withdrawal the current page again, a route, a new load');
  assert.deepEqual(anonymous.filter((e) => e.client_session_id !== undefined), [], 'no client session id without consent');
  assert.deepEqual(anonymous.filter((e) => e.ts_ms >= t.consent && e.ts_ms < t.withdraw).map((e) => [e.type, e.path]), [],
    'nothing cookieless between consent and withdrawal');
  assert.deepEqual(await api.get(`/api/v1/dead-letters?site_id=${CONSENT_SITE}`), [], 'the collector refused nothing the tag sent');
});
