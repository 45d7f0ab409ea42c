// Acceptance test of the dashboard's knowledge-base and chat-inbox screens
// (widgets/dashboard/src/views/kb.js and chat.js) in Chromium against a real crm server on a
// fresh data directory. The dashboard is the copy the binary serves at /; DASHBOARD_FROM=dist
// serves widgets/dashboard/dist/ from this checkout instead (as in dashboard.test.mjs).
//
// Checked: as admin, an article written in the KB form (a field error from the server shown next
// to its input first, then a published article), its public page, the list; an edit that lost a
// race with another writer (409 version_conflict, then reload and save a new version); a
// visitor's conversation started and handed off through the public chat API, shown as waiting in
// the inbox (and the visitor told someone is online), answered from the reply box (Shift+Enter
// a new line, Enter sends) and received by the visitor's poll as an agent message, then closed
// as answered; a visitor's email and company naming their conversation, markup they typed shown
// as text; the KB analytics (searches, top articles, the chat's unanswered question as a content
// gap leading to a new article); a sales rep sees the knowledge base without its writing controls.
// Screenshots: target/widget-screenshots/dashboard-kb*.png, dashboard-chat.png.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Api, poll } from './lib/api.mjs';
import { browserUserAgent, launchBrowser } from './lib/browser.mjs';
import { startCrm } from './lib/crm-server.mjs';
import { DASHBOARD_FROM, dashboardContext as dashboardContextOf } from './lib/dashboard.mjs';
import { screenshotPath } from './lib/env.mjs';

const SITE = 'dash-chat';

const ARTICLE = {
  title: 'How do refunds work?',
  slug: 'how-do-refunds-work',
  body: '# Refunds\n\nWe refund **any plan** within 30 days.\n\n- Write to billing\n- The money is back within 5 days',
  category: 'billing',
  tags: ['refunds', 'billing'],
};
const REPLY_LINES = ['Hi, this is the support team.', 'Refunds take 5 days.'];
// A question no article answers (a content gap), then the answers to the site's default
// qualification questions (email, company), the company being markup.
const GAP_QUERY = 'quantum teleportation';
const HOSTILE = { email: 'mallory@evil.example', company: '<img src=x onerror="window.__xss=1">' };

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

/** The public chat API as the widget calls it: JSON sent as text/plain, no sign-in. */
async function chat(method, path, body) {
  const res = await fetch(`${crm.url}/v1/chat/${SITE}/conversations${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'text/plain' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* keep the text */ }
  return { status: res.status, body: parsed };
}

async function signIn(target, username, password) {
  await target.locator('#login-username').waitFor({ timeout: 15_000 });
  await target.fill('#login-username', username);
  await target.fill('#login-password', password);
  await target.click('.login-form button[type=submit]');
  await target.locator('#site-select').waitFor({ timeout: 15_000 });
  await target.selectOption('#site-select', SITE);
}

before(async () => {
  crm = await startCrm();
  api = await Api.login(crm.url, crm.password);
  await api.post('/api/v1/sites', { site_id: SITE, name: 'Dashboard chat test' });
  await api.post('/api/v1/users', { username: 'e2e-rep', password: 'e2e-rep-password', role: 'sales_rep' });
  browser = await launchBrowser();
  context = await dashboardContext({ width: 1440, height: 900 });
  page = await context.newPage();
  page.on('pageerror', (err) => state.pageErrors.push(err.message));
});

after(async () => {
  await browser?.close().catch(() => {});
  await crm?.stop();
});

test('admin signs in; chat and knowledge base are in the navigation', async (t) => {
  t.diagnostic(`dashboard from ${DASHBOARD_FROM}`);
  await page.goto(`${crm.url}/`);
  await signIn(page, 'admin', crm.password);
  await page.locator('[data-nav=kb]').waitFor({ timeout: 10_000 });
  await page.locator('[data-nav=chat]').waitFor({ timeout: 10_000 });
  state.signedIn = true;
});

test('knowledge base: the server\'s field error next to its input, then a published article', async () => {
  need(state.signedIn, 'sign-in');
  await page.click('[data-nav=kb]');
  await page.locator('#kb-articles .state.empty', { hasText: 'No articles yet' }).waitFor({ timeout: 10_000 });
  await page.locator('#kb-kpis [data-kpi=kb_views]').waitFor({ timeout: 10_000 });
  await page.click('#kb-new');
  await page.locator('#kb-title').waitFor({ timeout: 10_000 });

  // A category the server refuses (422 with details.fields.category): shown by the field.
  await page.fill('#kb-title', ARTICLE.title);
  await page.fill('#kb-category', 'Not A Slug');
  await page.fill('#kb-tags', ARTICLE.tags.join(', '));
  await page.selectOption('#kb-status', 'published');
  await page.fill('#kb-body', ARTICLE.body);
  await page.click('#kb-save');
  await page.locator('#kb-category-error', { hasText: /lowercase/ }).waitFor({ timeout: 10_000 });
  assert.equal(await page.getAttribute('#kb-category', 'aria-invalid'), 'true');
  assert.equal((await page.locator('#kb-title-error').textContent()).trim(), '', 'only the bad field is marked');
  assert.equal(await page.evaluate(() => location.hash), '#/kb/new', 'a refused article stays in the form');
  assert.equal((await api.get(`/api/v1/kb/articles?site_id=${SITE}&include_deleted=true`)).length, 0, 'nothing was stored');

  await page.fill('#kb-category', ARTICLE.category);
  await page.click('#kb-save');
  await page.locator('#kb-form-status', { hasText: /created/i }).waitFor({ timeout: 10_000 });
  const articleId = await page.evaluate(() => (/^#\/kb\/(art_[^/?]+)/.exec(location.hash) || [])[1]);
  assert.ok(articleId, `the page went to the new article (hash ${await page.evaluate(() => location.hash)})`);
  const stored = await api.get(`/api/v1/kb/articles/${SITE}/${articleId}`);
  assert.equal(stored.title, ARTICLE.title);
  assert.equal(stored.slug, ARTICLE.slug);
  assert.equal(stored.status, 'published');
  assert.equal(stored.category, ARTICLE.category);
  assert.deepEqual(stored.tags, ARTICLE.tags);
  assert.equal(stored.body_md, ARTICLE.body);
  assert.equal(stored.version, 1);
  assert.equal(stored.updated_by, 'admin');

  // The public page of a published article.
  const publicPath = `/help/${SITE}/a/${ARTICLE.slug}`;
  assert.equal(await page.getAttribute('#kb-public-link', 'href'), publicPath);
  const help = await fetch(crm.url + publicPath);
  assert.equal(help.status, 200, `GET ${publicPath}`);
  assert.ok((await help.text()).includes('Refunds'), 'the help centre shows the article');
  await page.locator('#kb-versions tbody tr').first().waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#kb-versions tbody tr').count(), 1, 'one version so far');
  await page.screenshot({ path: screenshotPath('dashboard-kb-article.png'), fullPage: true });

  // The list shows it as published, with its public link.
  await page.click('[data-nav=kb]');
  const row = page.locator('#kb-articles tbody tr', { hasText: ARTICLE.title });
  await row.waitFor({ timeout: 10_000 });
  assert.match(await row.textContent(), /Published/);
  assert.equal(await row.locator(`[data-public-link="${articleId}"]`).getAttribute('href'), publicPath);
  await page.screenshot({ path: screenshotPath('dashboard-kb.png'), fullPage: true });
  state.articleId = articleId;
});

test('knowledge base: an edit that lost a race shows the conflict; after a reload it saves', async () => {
  const articleId = need(state.articleId, 'the article test');
  await page.locator('#kb-articles tbody tr', { hasText: ARTICLE.title }).locator('a.who-name').click();
  await page.locator('#kb-version', { hasText: 'version 1' }).waitFor({ timeout: 10_000 });

  // Someone else saves version 2 while the form still holds version 1.
  const path = `/api/v1/kb/articles/${SITE}/${articleId}`;
  const theirs = `${ARTICLE.body}\n\nEdited elsewhere.`;
  const other = await api.data('PUT', path, { title: ARTICLE.title, body_md: theirs, category: ARTICLE.category, tags: ARTICLE.tags, status: 'published', version: 1 });
  assert.equal(other.version, 2);

  await page.fill('#kb-body', `${ARTICLE.body}\n\nMy edit.`);
  await page.click('#kb-save');
  await page.locator('#kb-form-error', { hasText: /changed by someone else/i }).waitFor({ timeout: 10_000 });
  assert.equal((await api.get(path)).body_md, theirs, 'the conflicting save changed nothing');

  await page.click('#kb-reload');
  await page.locator('#kb-version', { hasText: 'version 2' }).waitFor({ timeout: 10_000 });
  assert.equal(await page.inputValue('#kb-body'), theirs, 'the reloaded form holds their version');
  await page.fill('#kb-body', `${theirs}\n\nMy edit.`);
  await page.click('#kb-save');
  await page.locator('#kb-form-status', { hasText: 'version 3' }).waitFor({ timeout: 10_000 });
  const saved = await api.get(path);
  assert.equal(saved.version, 3);
  assert.equal(saved.body_md, `${theirs}\n\nMy edit.`);
  await page.waitForFunction(() => document.querySelectorAll('#kb-versions tbody tr').length === 3, undefined, { timeout: 10_000 });
});

test('chat: a handed-off visitor waits in the inbox; the dashboard\'s reply reaches them', async () => {
  need(state.signedIn, 'sign-in');
  const started = await chat('POST', '', { visitor_id: 'v-dash-1' });
  assert.equal(started.status, 201, `POST /v1/chat/${SITE}/conversations: ${JSON.stringify(started.body)}`);
  const { conversation_id: id, token } = started.body.data;
  assert.ok(id && token, `the start returns an id and a token: ${JSON.stringify(started.body.data)}`);
  const handoff = await chat('POST', `/${id}/handoff`, { token });
  assert.equal(handoff.status, 200, `handoff: ${JSON.stringify(handoff.body)}`);
  assert.equal(handoff.body.data.status, 'handed_off');

  await page.click('[data-nav=chat]');
  const row = page.locator(`#chat-waiting [data-conversation="${id}"]`);
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await row.getAttribute('data-status'), 'handed_off');
  assert.match(await row.textContent(), /Waiting/);
  assert.match(await row.textContent(), /Unassigned/);
  // Reading the inbox made the admin "online": the visitor's widget says someone will reply.
  await poll('the visitor to see someone online', async () => (await chat('GET', `/${id}?token=${encodeURIComponent(token)}`)).body?.data?.agents_online === true, { timeout: 10_000, interval: 500 });

  await row.click();
  await page.locator('#chat-transcript [data-author=assistant]').first().waitFor({ timeout: 10_000 });
  assert.ok((await page.locator('#chat-transcript [data-author=assistant]').count()) >= 2, 'the greeting and the handoff notice');
  assert.equal(await page.getAttribute('#chat-visitor-link', 'href'), '#/visitors/v-dash-1');
  assert.ok((await page.evaluate(() => location.hash)).includes(`c=${id}`), 'the route names the open conversation');

  // Shift+Enter starts a new line, Enter sends; the reply shows at once.
  await page.click('#chat-reply');
  await page.keyboard.type(REPLY_LINES[0]);
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type(REPLY_LINES[1]);
  await page.keyboard.press('Enter');
  const reply = REPLY_LINES.join('\n');
  const mine = page.locator('#chat-transcript [data-author=agent]');
  await mine.first().waitFor({ timeout: 10_000 });
  assert.equal(await mine.count(), 1, 'one agent message');
  assert.equal(await mine.locator('.msg-text').textContent(), reply);
  assert.equal(await mine.locator('.msg-author').textContent(), 'admin');
  assert.equal(await page.inputValue('#chat-reply'), '', 'the reply box is emptied');

  // The visitor's poll receives it as an agent message.
  const received = await poll('the visitor to receive the reply', async () => {
    const { status, body } = await chat('GET', `/${id}?token=${encodeURIComponent(token)}`);
    return status === 200 ? (body.data.messages || []).find((m) => m.author === 'agent') : undefined;
  }, { timeout: 10_000, interval: 500 });
  assert.equal(received.text, reply);
  assert.equal(received.agent, 'admin');
  // The next list poll shows who took it.
  await page.locator(`#chat-list [data-conversation="${id}"]`, { hasText: 'admin' }).waitFor({ timeout: 10_000 });
  await page.screenshot({ path: screenshotPath('dashboard-chat.png'), fullPage: true });

  await page.click('#chat-close-answered');
  await page.locator('#chat-conversation .chat-title .badge', { hasText: 'Resolved' }).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator('#chat-close-answered').count(), 0, 'no close buttons on a resolved conversation');
  const staffView = await api.get(`/api/v1/chat/conversations/${SITE}/${id}`);
  assert.equal(staffView.status, 'resolved');
  assert.equal(staffView.assigned_to, 'admin');
  assert.equal((await chat('GET', `/${id}?token=${encodeURIComponent(token)}`)).body.data.status, 'resolved');
  await page.locator(`#chat-others [data-conversation="${id}"][data-status=resolved]`).waitFor({ timeout: 10_000 });
  assert.equal(await page.locator(`#chat-waiting [data-conversation="${id}"]`).count(), 0, 'no longer waiting');
});

test('chat: a visitor\'s email and company name the conversation; what they typed stays text', async () => {
  need(state.signedIn, 'sign-in');
  const started = await chat('POST', '', { visitor_id: 'v-dash-2' });
  assert.equal(started.status, 201, `POST /v1/chat/${SITE}/conversations: ${JSON.stringify(started.body)}`);
  const { conversation_id: id, token } = started.body.data;
  // After its first answer the assistant asks for an email, then for a company.
  for (const text of [GAP_QUERY, HOSTILE.email, HOSTILE.company]) {
    const sent = await chat('POST', `/${id}/messages`, { token, text });
    assert.equal(sent.status, 201, `sending ${JSON.stringify(text)}: ${JSON.stringify(sent.body)}`);
  }
  const { fields } = await api.get(`/api/v1/chat/conversations/${SITE}/${id}`);
  assert.deepEqual({ email: fields.email, company: fields.company }, HOSTILE, 'the chat asked for email and company (the site\'s default questions)');
  assert.equal((await chat('POST', `/${id}/handoff`, { token })).status, 200);

  await page.click('[data-nav=chat]');
  const row = page.locator(`#chat-waiting [data-conversation="${id}"]`);
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await row.locator('.inbox-who').textContent(), HOSTILE.email);
  assert.ok((await row.textContent()).includes(HOSTILE.company), 'the company is shown as text');
  await row.click();
  await page.locator('#chat-transcript [data-author=visitor] .msg-text', { hasText: HOSTILE.company }).waitFor({ timeout: 10_000 });
  await page.locator('#chat-conversation dd', { hasText: HOSTILE.company }).waitFor({ timeout: 10_000 });
  assert.equal(await page.evaluate(() => window.__xss), undefined, 'no markup from the chat ran');
  state.gapAsked = true;
});

test('knowledge base analytics: searches, top articles and the content gap the chat left', async () => {
  const articleId = need(state.articleId, 'the article test');
  need(state.gapAsked, 'the chat question');
  // A visit of the public page with a browser's user agent (bots are not counted).
  const visit = await fetch(`${crm.url}/help/${SITE}/a/${ARTICLE.slug}`, { headers: { 'user-agent': browserUserAgent() } });
  assert.equal(visit.status, 200);
  const analytics = () => api.get(`/api/v1/kb/analytics?site_id=${SITE}`);
  // The server adds its buffered counters to the store every few seconds.
  const report = await poll('the view and the unanswered question in the KB analytics', async () => {
    const r = await analytics();
    return r.gaps.some((g) => g.query === GAP_QUERY) && r.top_articles.some((a) => a.article_id === articleId) ? r : undefined;
  }, { timeout: 20_000, interval: 1_000, describe: analytics });

  await page.click('[data-nav=kb]');
  const gap = page.locator('#kb-gaps tbody tr', { hasText: GAP_QUERY });
  await gap.waitFor({ timeout: 10_000 });
  await page.locator('#kb-top tbody tr', { hasText: ARTICLE.title }).waitFor({ timeout: 10_000 });
  assert.equal((await page.locator('[data-kpi=kb_searches] .kpi-value').textContent()).trim(), String(report.totals.searches));
  assert.ok(Number((await page.locator('[data-kpi=kb_views] .kpi-value').textContent()).replace(/\D/g, '')) >= 1, 'the view is counted');
  await page.screenshot({ path: screenshotPath('dashboard-kb-analytics.png'), fullPage: true });

  // A gap leads to a new article titled with its query.
  await gap.locator('a', { hasText: 'Write an article' }).click();
  await page.locator('#kb-title').waitFor({ timeout: 10_000 });
  assert.equal(await page.inputValue('#kb-title'), GAP_QUERY);
});

test('a sales rep reads the knowledge base without its writing controls', async () => {
  need(state.articleId, 'the article test');
  const repContext = await dashboardContext({ width: 1280, height: 800 });
  const rep = await repContext.newPage();
  rep.on('pageerror', (err) => state.pageErrors.push(`rep: ${err.message}`));
  await rep.goto(`${crm.url}/#/kb`);
  await signIn(rep, 'e2e-rep', 'e2e-rep-password');
  await rep.click('[data-nav=kb]');
  const row = rep.locator('#kb-articles tbody tr', { hasText: ARTICLE.title });
  await row.waitFor({ timeout: 10_000 });
  assert.equal(await rep.locator('#kb-new').count(), 0, 'no "New article" button');
  await row.locator('a.who-name').click();
  await rep.locator('#kb-version', { hasText: 'version 3' }).waitFor({ timeout: 10_000 });
  assert.equal(await rep.locator('#kb-save').count(), 0, 'no save button');
  assert.equal(await rep.locator('#kb-delete').count(), 0, 'no delete button');
  assert.equal(await rep.locator('#kb-title').evaluate((el) => el.readOnly), true, 'the form is read-only');
  await rep.locator('#kb-versions tbody tr').first().waitFor({ timeout: 10_000 });
  await repContext.close();
  assert.deepEqual(state.pageErrors, [], 'no uncaught errors in the pages');
});
