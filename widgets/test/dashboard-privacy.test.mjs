// Acceptance test of the dashboard's privacy features (widgets/dashboard/src/privacy.js, the lead
// and visitor screens, views/settings.js) in Chromium against a real crm server on a fresh data
// directory. The dashboard is the copy the binary serves at /; DASHBOARD_FROM=dist serves
// widgets/dashboard/dist/ from this checkout instead (as in dashboard.test.mjs).
//
// Seeded through POST /v1/events: a lead with two devices (two visitors identifying with the same
// email), a second lead with one device and an unidentified visitor. Checked, as admin: the
// lead's "Export data" saves subject-<lead_id>.json holding both visitor ids and all their
// events; "Erase…" on a device of the lead is refused (409) with a link to the lead and erases
// nothing; the lead's erase needs its email typed exactly, then shows the server's counts on the
// leads list without the lead, and the erasure is in the site's erasure log; an unidentified
// visitor is exported and erased from its page; the site settings' privacy form (the server's 422
// for a retention of 0 shown at the field, then DNT/GPC, retention and the datacenter-ASN bot
// signal saved with the site, other settings kept). A sales manager sees Export but not Erase nor
// the site settings; a sales rep sees neither button.
// Screenshots: target/widget-screenshots/dashboard-privacy-*.png.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { Api, poll } from './lib/api.mjs';
import { browserUserAgent, launchBrowser } from './lib/browser.mjs';
import { startCrm } from './lib/crm-server.mjs';
import { DASHBOARD_FROM, dashboardContext as dashboardContextOf } from './lib/dashboard.mjs';
import { screenshotPath } from './lib/env.mjs';

const SITE = 'dash-privacy';
const ORIGINS = ['https://www.acme.example'];
const GOAL = { goal_id: 'demo', name: 'Demo page', match: { kind: 'page', pattern: '/demo*' } };
const ADA = { email: 'ada@acme.example', name: 'Ada Lovelace', devices: ['ada-laptop', 'ada-phone'], events: 7 };
const BO = { email: 'bo@acme.example', name: 'Bo Brummell', device: 'bo-desk' };
const ANON = { id: 'anon-reader', events: 2 };
const USERS = {
  manager: { username: 'e2e-manager', password: 'e2e-manager-password', role: 'sales_manager' },
  rep: { username: 'e2e-rep', password: 'e2e-rep-password', role: 'sales_rep' },
};

let crm;
let api;
let browser;
let context;
let page;
const state = { pageErrors: [] };

function need(value, what) {
  assert.ok(value, `cannot run: ${what} failed earlier in this file (see the first failure)`);
  return value;
}

/** A browser context that gets the dashboard from the binary, or from dist/ (DASHBOARD_FROM). */
function dashboardContext(viewport) {
  return dashboardContextOf(browser, crm.url, viewport);
}

/** Ada on her laptop then her phone (identifying on both), Bo on one device, an anonymous reader. */
async function sendVisitors() {
  const t = Date.now() - 10 * 60_000;
  const url = (path) => `https://www.acme.example${path}`;
  const page = (visitor, i, path) => ({ v: 1, type: 'pageview', site_id: SITE, visitor_id: visitor, ts: t + i * 1000, url: url(path), title: path });
  const identify = (visitor, i, who) => ({ v: 1, type: 'identify', site_id: SITE, visitor_id: visitor, ts: t + i * 1000, url: url('/'), traits: { email: who.email, name: who.name } });
  const events = [
    page('ada-laptop', 0, '/'),
    page('ada-laptop', 1, '/pricing'),
    page('ada-laptop', 2, '/features'),
    identify('ada-laptop', 3, ADA),
    page('ada-phone', 10, '/'),
    page('ada-phone', 11, '/demo'),
    identify('ada-phone', 12, ADA),
    page(BO.device, 0, '/'),
    identify(BO.device, 1, BO),
    page(ANON.id, 0, '/blog'),
    page(ANON.id, 1, '/blog/privacy'),
  ];
  const res = await fetch(`${crm.url}/v1/events`, { method: 'POST', headers: { 'content-type': 'text/plain', 'user-agent': browserUserAgent() }, body: JSON.stringify({ events }) });
  assert.equal(res.status, 202, `collector refused the events: ${await res.text()}`);
}

const leads = () => api.get(`/api/v1/leads?site_id=${SITE}&limit=50`);

async function signIn(target, username, password) {
  await target.locator('#login-username').waitFor({ timeout: 15_000 });
  await target.fill('#login-username', username);
  await target.fill('#login-password', password);
  await target.click('.login-form button[type=submit]');
  await target.locator('#site-select').waitFor({ timeout: 15_000 });
  await target.selectOption('#site-select', SITE);
}

/**
 * Opens a hash route of the signed-in app and waits for `ready` on it. The app's hashchange
 * listener runs before the one added here, so the old screen is gone when the promise settles.
 */
async function open(target, hash, ready) {
  await target.evaluate((h) => new Promise((done) => {
    if (location.hash === h) return done();
    window.addEventListener('hashchange', () => done(), { once: true });
    location.hash = h;
  }), hash);
  await target.locator(ready).first().waitFor({ timeout: 10_000 });
}

/** Clicks Export data and returns { name, doc } of the file the browser downloaded. */
async function exportFile(target) {
  const [download] = await Promise.all([target.waitForEvent('download', { timeout: 10_000 }), target.click('#privacy-export')]);
  const doc = JSON.parse(await readFile(await download.path(), 'utf8'));
  return { name: download.suggestedFilename(), doc };
}

/** The counts a list shows, as { kind: n }. */
async function shownCounts(list) {
  return Object.fromEntries(await list.locator('li').evaluateAll((items) => items.map((li) => [li.dataset.kind, Number(li.dataset.count)])));
}

before(async () => {
  crm = await startCrm();
  api = await Api.login(crm.url, crm.password);
  await api.post('/api/v1/sites', { site_id: SITE, name: 'Dashboard privacy test', allowed_origins: ORIGINS, goals: [GOAL] });
  for (const user of Object.values(USERS)) await api.post('/api/v1/users', user);
  await sendVisitors();
  const found = await poll('two leads (Ada with both devices) and the anonymous reader', async () => {
    const all = await leads();
    const ada = all.find((l) => l.email === ADA.email);
    const bo = all.find((l) => l.email === BO.email);
    const anon = await api.visitor(SITE, ANON.id);
    return ada?.visitor_ids?.length === 2 && bo && anon ? { ada, bo } : undefined;
  }, { timeout: 30_000, describe: leads });
  state.adaId = found.ada.lead_id;
  state.boId = found.bo.lead_id;
  browser = await launchBrowser();
  context = await dashboardContext({ width: 1440, height: 900 });
  page = await context.newPage();
  page.on('pageerror', (err) => state.pageErrors.push(err.message));
});

after(async () => {
  await browser?.close().catch(() => {});
  await crm?.stop();
});

test('admin signs in; the site settings are in the navigation', async (t) => {
  t.diagnostic(`dashboard from ${DASHBOARD_FROM}`);
  await page.goto(`${crm.url}/`);
  await signIn(page, 'admin', crm.password);
  await page.locator('[data-nav=settings]').waitFor({ timeout: 10_000 });
  state.signedIn = true;
});

test('a lead\'s export downloads subject-<lead_id>.json with both devices and their events', async () => {
  need(state.signedIn, 'sign-in');
  await page.click('[data-nav=leads]');
  await page.locator('#leads-panel a.who-name', { hasText: ADA.name }).click();
  await page.locator('#privacy-export').waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => location.hash), `#/leads/${encodeURIComponent(state.adaId)}`);
  await page.locator('#privacy-erase').waitFor();

  const { name, doc } = await exportFile(page);
  assert.equal(name, `subject-${state.adaId}.json`);
  assert.equal(doc.site_id, SITE);
  assert.deepEqual([...doc.visitor_ids].sort(), [...ADA.devices].sort(), 'both devices');
  assert.equal(doc.events.length, ADA.events, 'every event of both devices');
  assert.deepEqual([...new Set(doc.events.map((e) => e.visitor_id))].sort(), [...ADA.devices].sort());
  const kinds = doc.events.map((e) => e.type ?? e.body?.type);
  assert.deepEqual([kinds.filter((k) => k === 'pageview').length, kinds.filter((k) => k === 'identify').length], [5, 2], `kinds: ${kinds}`);
  assert.equal(doc.leads.length, 1);
  assert.equal(doc.leads[0].lead.email, ADA.email);
  assert.ok(!JSON.stringify(doc).includes(BO.email) && !JSON.stringify(doc).includes(ANON.id), 'nobody else\'s records');
  await page.locator('#privacy-status', { hasText: `subject-${state.adaId}.json` }).waitFor();
  assert.match(await page.locator('#privacy-status').textContent(), /7 events of 2 devices/);
  state.exported = true;
});

test('erasing a device of the lead is refused with a link to the lead; nothing is erased', async () => {
  need(state.signedIn, 'sign-in');
  await open(page, '#/visitors/ada-phone', '#privacy-erase');
  await page.click('#privacy-erase');
  await page.locator('#erase-dialog[open]').waitFor();
  await page.fill('#erase-confirm', 'ada-phone');
  await page.click('#erase-submit');
  const error = page.locator('#privacy-error');
  await error.locator('a#privacy-lead-link').waitFor({ timeout: 10_000 });
  assert.match(await error.textContent(), /belongs to lead/);
  assert.equal(await page.locator('#erase-dialog[open]').count(), 0, 'the dialog closed');
  assert.equal(await page.getAttribute('#privacy-lead-link', 'href'), `#/leads/${encodeURIComponent(state.adaId)}`);
  assert.deepEqual(await api.get(`/api/v1/privacy/erasures?site_id=${SITE}`), [], 'nothing was erased');
  await page.click('#privacy-lead-link');
  await page.locator('#lead-devices').waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => location.hash), `#/leads/${encodeURIComponent(state.adaId)}`);
});

test('the lead\'s erase needs its email typed exactly, then shows the counts and the list without it', async () => {
  need(state.exported, 'the export');
  await open(page, `#/leads/${encodeURIComponent(state.adaId)}`, '#lead-devices');
  await page.click('#privacy-erase');
  const dialog = page.locator('#erase-dialog[open]');
  await dialog.waitFor();
  assert.ok((await dialog.textContent()).includes(ADA.email), 'the dialog says what to type');
  assert.equal(await page.isDisabled('#erase-submit'), true, 'nothing typed yet');
  for (const wrong of ['ada@acme', ADA.email.toUpperCase(), ` ${ADA.email}`]) {
    await page.fill('#erase-confirm', wrong);
    assert.equal(await page.isDisabled('#erase-submit'), true, `"${wrong}" does not confirm`);
  }
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'detached', timeout: 5_000 }); // Escape cancels
  assert.ok(await api.get(`/api/v1/leads/${encodeURIComponent(state.adaId)}?site_id=${SITE}`), 'cancelling erased nothing');

  await page.click('#privacy-erase');
  await dialog.waitFor();
  assert.equal(await page.inputValue('#erase-confirm'), '', 'the confirmation starts empty again');
  await page.fill('#erase-confirm', ADA.email);
  assert.equal(await page.isDisabled('#erase-submit'), false);
  await page.screenshot({ path: screenshotPath('dashboard-privacy-erase.png') });
  await page.click('#erase-submit');

  const result = page.locator('#erase-result');
  await result.waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => location.hash), '#/leads', 'back on the leads list');
  assert.match(await result.textContent(), new RegExp(`Erased ${ADA.name}`));
  const [erasure] = await api.get(`/api/v1/privacy/erasures?site_id=${SITE}`);
  assert.ok(erasure, 'the erasure is recorded');
  assert.deepEqual(erasure.subject, { type: 'lead', lead_id: state.adaId });
  assert.deepEqual([...erasure.visitor_ids].sort(), [...ADA.devices].sort());
  const shown = await shownCounts(page.locator('#erase-counts'));
  assert.deepEqual(shown, Object.fromEntries(Object.entries(erasure.counts).filter(([, n]) => n > 0)), 'the counts the server returned');
  assert.deepEqual({ events: shown.events, sessions: shown.sessions, profiles: shown.profiles, leads: shown.leads }, { events: ADA.events, sessions: 2, profiles: 2, leads: 1 });

  await page.locator('#leads-panel a.who-name', { hasText: BO.name }).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#leads-panel', { hasText: ADA.name }).count(), 0, 'the lead is gone from the list');
  assert.equal(await page.locator('#leads-panel', { hasText: ADA.email }).count(), 0);
  await page.screenshot({ path: screenshotPath('dashboard-privacy-erased.png'), fullPage: true });
  const gone = await api.request('GET', `/api/v1/leads/${encodeURIComponent(state.adaId)}?site_id=${SITE}`);
  assert.equal(gone.status, 404, 'the lead is gone from the API');
  for (const device of ADA.devices) assert.equal(await api.visitor(SITE, device), undefined, `${device} is gone`);

  // The erasure in the site's log: when, who, what, what was deleted.
  await page.click('[data-nav=settings]');
  const row = page.locator('#erasure-log tbody tr');
  await row.first().waitFor({ timeout: 10_000 });
  assert.equal(await row.count(), 1);
  const text = await row.textContent();
  assert.ok(text.includes('admin') && text.includes('Lead') && text.includes(state.adaId) && text.includes('2 devices'), text);
  assert.deepEqual(await shownCounts(row.locator('.erase-counts')), shown);
  state.leadErased = true;
});

test('an unidentified visitor is exported and erased from its page', async () => {
  need(state.signedIn, 'sign-in');
  await open(page, `#/visitors/${ANON.id}`, '#privacy-export');
  const { name, doc } = await exportFile(page);
  assert.equal(name, `subject-${ANON.id}.json`);
  assert.deepEqual(doc.visitor_ids, [ANON.id]);
  assert.equal(doc.events.length, ANON.events);
  assert.deepEqual(doc.leads, []);

  await page.click('#privacy-erase');
  await page.locator('#erase-dialog[open]').waitFor();
  await page.fill('#erase-confirm', ANON.id);
  await page.click('#erase-submit');
  await page.locator('#erase-result').waitFor({ timeout: 15_000 });
  assert.equal(await page.evaluate(() => location.hash), '#/visitors');
  const shown = await shownCounts(page.locator('#erase-counts'));
  assert.equal(shown.events, ANON.events);
  assert.equal(shown.profiles, 1);
  assert.equal(await api.visitor(SITE, ANON.id), undefined, 'the visitor is gone');
  await page.locator('#visitors-panel tbody tr').first().waitFor({ timeout: 10_000 });
  assert.equal(await page.locator(`#visitors-panel a[href="#/visitors/${ANON.id}"]`).count(), 0, 'not listed any more');
  assert.equal((await api.get(`/api/v1/privacy/erasures?site_id=${SITE}`)).length, state.leadErased ? 2 : 1, 'the erasure is logged');
});

test('site settings: the retention\'s 422 at its field, then the privacy settings saved with the site', async () => {
  need(state.signedIn, 'sign-in');
  await page.click('[data-nav=settings]');
  await page.locator('#privacy-form').waitFor({ timeout: 10_000 });
  assert.equal(await page.isChecked('#privacy-dnt'), false);
  assert.equal(await page.isChecked('#bots-datacenter'), true, 'datacenter traffic is bot traffic by default');
  assert.equal(await page.inputValue('#privacy-retention'), '', 'events are kept');

  await page.fill('#privacy-retention', '0');
  await page.click('#privacy-save');
  await page.locator('#privacy-retention-error', { hasText: /between 1 and 3650/ }).waitFor({ timeout: 10_000 });
  assert.equal(await page.getAttribute('#privacy-retention', 'aria-invalid'), 'true');
  assert.equal((await page.locator('#privacy-notice').textContent()).trim(), '', 'nothing saved');
  assert.deepEqual((await api.get(`/api/v1/sites/${SITE}`)).privacy, { honor_dnt_gpc: false }, 'the site is unchanged');
  await page.screenshot({ path: screenshotPath('dashboard-privacy-settings.png'), fullPage: true });

  await page.fill('#privacy-retention', '30');
  assert.equal((await page.locator('#privacy-retention-error').textContent()).trim(), '', 'typing clears the message');
  await page.check('#privacy-dnt');
  await page.uncheck('#bots-datacenter');
  await page.click('#privacy-save');
  await page.locator('#privacy-notice', { hasText: 'saved' }).waitFor({ timeout: 10_000 });
  let site = await api.get(`/api/v1/sites/${SITE}`);
  assert.deepEqual(site.privacy, { honor_dnt_gpc: true, retention_days: 30 });
  assert.deepEqual(site.bots, { datacenter_asn: false });
  assert.deepEqual(site.allowed_origins, ORIGINS, 'other settings are kept');
  assert.deepEqual(site.goals, [GOAL], 'the goals are kept');

  await page.reload();
  await page.locator('#privacy-form').waitFor({ timeout: 15_000 });
  assert.equal(await page.isChecked('#privacy-dnt'), true);
  assert.equal(await page.isChecked('#bots-datacenter'), false);
  assert.equal(await page.inputValue('#privacy-retention'), '30');

  // Empty keeps events again.
  await page.fill('#privacy-retention', '');
  await page.click('#privacy-save');
  await page.locator('#privacy-notice', { hasText: 'saved' }).waitFor({ timeout: 10_000 });
  site = await api.get(`/api/v1/sites/${SITE}`);
  assert.deepEqual(site.privacy, { honor_dnt_gpc: true });
});

test('a sales manager may export but not erase; a sales rep sees neither', async () => {
  need(state.signedIn, 'sign-in');
  const boLead = `#/leads/${encodeURIComponent(state.boId)}`;
  const managerContext = await dashboardContext({ width: 1280, height: 800 });
  const manager = await managerContext.newPage();
  manager.on('pageerror', (err) => state.pageErrors.push(`manager: ${err.message}`));
  await manager.goto(`${crm.url}/`);
  await signIn(manager, USERS.manager.username, USERS.manager.password);
  await open(manager, boLead, '#lead-devices');
  await manager.locator('#privacy-export').waitFor();
  assert.equal(await manager.locator('#privacy-erase').count(), 0, 'no Erase button');
  assert.equal(await manager.locator('[data-nav=settings]').count(), 0, 'no site settings');
  const { name, doc } = await exportFile(manager);
  assert.equal(name, `subject-${state.boId}.json`);
  assert.deepEqual(doc.visitor_ids, [BO.device]);
  await open(manager, `#/visitors/${BO.device}`, '#privacy-export');
  assert.equal(await manager.locator('#privacy-erase').count(), 0);
  await managerContext.close();

  const repContext = await dashboardContext({ width: 1280, height: 800 });
  const rep = await repContext.newPage();
  rep.on('pageerror', (err) => state.pageErrors.push(`rep: ${err.message}`));
  await rep.goto(`${crm.url}/`);
  await signIn(rep, USERS.rep.username, USERS.rep.password);
  await open(rep, boLead, '#lead-devices');
  assert.equal(await rep.locator('#privacy-actions').count(), 0, 'no privacy buttons on the lead');
  await open(rep, `#/visitors/${BO.device}`, '#visitor-profile');
  assert.equal(await rep.locator('#privacy-actions').count(), 0, 'no privacy buttons on the visitor');
  assert.equal(await rep.locator('[data-nav=settings]').count(), 0, 'no site settings');
  await repContext.close();
  assert.deepEqual(state.pageErrors, [], 'no uncaught errors in the pages');
});
