// Cookieless mode (data-cookieless): the tag stores nothing in the browser and sends no ids; the
// collector derives one visitor id per (day, site, IP, user agent), so separate page loads, even
// from fresh browser contexts, still add up to one visitor.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { poll } from './lib/api.mjs';
import { newContext, recordBeacons, waitForTag } from './lib/browser.mjs';
import { sleep } from './lib/env.mjs';
import { startStack } from './lib/stack.mjs';

const SITE = 'e2e-cookieless';

let stack;

before(async () => {
  stack = await startStack({ siteId: SITE, siteName: 'Widget e2e: cookieless', tagAttrs: ' data-cookieless' });
});

after(async () => {
  await stack?.stop();
});

/** What the page keeps in the browser: cookies, localStorage, sessionStorage. */
async function assertNothingStored(page, context, where) {
  await waitForTag(page);
  const stored = await page.evaluate(() => ({
    cookie: document.cookie,
    localStorage: Object.keys(localStorage),
    sessionStorage: Object.keys(sessionStorage),
  }));
  assert.doesNotMatch(stored.cookie, /crm_/, `${where}: no crm_ cookie`);
  assert.deepEqual(stored, { cookie: '', localStorage: [], sessionStorage: [] }, `${where}: nothing stored by the page`);
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
