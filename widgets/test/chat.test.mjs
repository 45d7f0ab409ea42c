// Acceptance test of the chat widget (chat-widget.js) and its backend: a visitor on the demo site
// opens the chat, asks a question the knowledge base answers and gets a link to the article,
// answers the assistant's email question, asks for a person, gets the reply a staff member (admin)
// types in the dashboard's chat inbox (a real page of the dashboard the crm server serves at /,
// signed in through its login form, in a browser context of its own), and finds the
// conversation again on the next page. The API then shows the lead (scored), the
// transcript on the tracker's visitor, and the chat_handoff alert (delivered to a webhook).
// Smaller tests: hostile input stays text and over-long messages are refused visibly; "Yes"
// under an answer resolves the conversation.
//
// The contract (what the widget and the server must do):
//   POST {collector}/v1/chat/{site}/conversations                    {"visitor_id","session_id","url"}
//        → 201 {"conversation_id","token","status","agents_online","title","messages":[greeting]}
//   GET  {collector}/v1/chat/{site}/conversations/{id}?token=…&after=AT_MS → messages after AT_MS
//   POST …/conversations/{id}/messages {"token","text","client_id"} → 201 {"status","messages"}
//        (413 message_too_long over 2000 characters, 422 empty_message, 429, 409, 404)
//   POST …/conversations/{id}/handoff {"token"}, POST …/conversations/{id}/feedback {"token","helpful"}
//   Bodies are text/plain JSON (no preflight); replies are {"success","data"|"error"} envelopes.
//   In the page: one [data-crm-chat] host with an open shadow root holding a launcher button
//   (aria-label "Open chat", aria-expanded), a role=dialog panel, a role=log message list whose
//   messages carry data-message-id and data-author, a textarea (maxlength 2000), an error line
//   [role=alert][data-code]; the document receives "crm:chat" events {type, conversation_id}.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { poll } from './lib/api.mjs';
import { newContext, waitForTag } from './lib/browser.mjs';
import { dashboardContext } from './lib/dashboard.mjs';
import { screenshotPath, sleep } from './lib/env.mjs';
import { startStack } from './lib/stack.mjs';

const SITE = 'e2e-chat';
const ARTICLE = {
  site_id: SITE,
  title: 'Single sign-on with SAML',
  body_md: 'Connect Okta or Azure AD so your team signs in with SAML single sign-on.',
  status: 'published',
};
const QUESTION = 'How do I set up SAML single sign-on with Okta?';
const EMAIL = 'ana@acme-corp.example';
const AGENT_REPLY = 'Hi Ana, I can help';
const XSS = '<img src=x onerror="window.__xss=1">';

let stack;
let receiver;
const state = {}; // shared by the tests below, which run in order

/** A webhook receiver on a free port: records every request, answers 200. */
async function startReceiver() {
  const hits = [];
  const server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => {
      let body = text;
      try { body = JSON.parse(text); } catch { /* keep the text */ }
      hits.push({ method: req.method, path: req.url, headers: req.headers, body });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise((ready, fail) => server.once('error', fail).listen(0, '127.0.0.1', ready));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    hits,
    close: () => new Promise((done) => {
      server.closeAllConnections();
      server.close(() => done());
    }),
  };
}

before(async () => {
  // Every request comes from 127.0.0.1: no per-address limit on the public chat, KB and help
  // centre (the polling pages and the test's own requests share it).
  stack = await startStack({ siteId: SITE, siteName: 'Widget e2e: chat', chat: true, crmArgs: ['--kb-rate-limit-ip', '0'] });
  receiver = await startReceiver();
});

after(async () => {
  await state.staff?.context.close().catch(() => {});
  await state.visitor?.context.close().catch(() => {});
  await receiver?.close();
  await stack?.stop();
});

/** Fails (never skips) when an earlier step this test builds on did not work. */
function need(value, what) {
  assert.ok(value, `cannot run: ${what} failed earlier in this file (see the first failure)`);
  return value;
}

// The widget's host; Playwright's CSS locators pierce its open shadow root.
const chat = (page) => page.locator('[data-crm-chat]');
const launcher = (page) => chat(page).locator('button[aria-label="Open chat"]');
const panel = (page) => chat(page).locator('[role="dialog"]');
const log = (page) => chat(page).locator('[role="log"]');
const textarea = (page) => chat(page).locator('textarea');
const sendButton = (page) => chat(page).getByRole('button', { name: 'Send', exact: true });
const talkButton = (page) => chat(page).getByRole('button', { name: 'Talk to a person', exact: true });

/** Records the crm:chat events of every page of the context in window.__chatEvents. */
async function recordChatEvents(context) {
  await context.addInitScript(() => {
    window.__chatEvents = [];
    document.addEventListener('crm:chat', (e) => window.__chatEvents.push(JSON.parse(JSON.stringify(e.detail))));
  });
}
const chatEvents = (page) => page.evaluate(() => window.__chatEvents || []);

/** The messages the widget shows: [{id, author, text}] (text = the element's whole text). */
function shownMessages(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-crm-chat]')?.shadowRoot;
    if (!root) return 'no [data-crm-chat] host with an open shadow root';
    return [...root.querySelectorAll('[role="log"] [data-message-id]')].map((m) => ({
      id: m.getAttribute('data-message-id'), author: m.getAttribute('data-author'), text: m.textContent,
    }));
  });
}

/** Waits for a message of `author` whose text contains `text` (a string or RegExp); returns it. */
async function waitForMessage(page, author, text, timeout = 15_000) {
  const message = log(page).locator(`[data-author="${author}"]`).filter({ hasText: text }).first();
  await message.waitFor({ state: 'visible', timeout }).catch(async (err) => {
    throw new Error(`no ${author} message containing ${JSON.stringify(String(text))} in the chat within ${timeout} ms ` +
      `(${err.message.split('\n')[0]})\nmessages shown: ${JSON.stringify(await shownMessages(page), null, 2)}`);
  });
  return message;
}

/** Waits until the widget shows more than `count` messages of `author`. */
async function waitForMoreMessages(page, author, count, timeout = 15_000) {
  await page.waitForFunction(([who, n]) => {
    const root = document.querySelector('[data-crm-chat]')?.shadowRoot;
    return root && root.querySelectorAll(`[role="log"] [data-author="${who}"]`).length > n;
  }, [author, count], { timeout }).catch(async (err) => {
    throw new Error(`no new ${author} message within ${timeout} ms (${err.message.split('\n')[0]})\n` +
      `messages shown: ${JSON.stringify(await shownMessages(page), null, 2)}`);
  });
}

/** The ids of shown messages, sorted (duplicates kept, so they show up in comparisons). */
const ids = (messages) => messages.map((m) => m.id).sort();

const countMessages = async (page, author) => log(page).locator(`[data-author="${author}"]`).count();

/** The element focused inside the widget's shadow root, as "tag[aria-label]". */
const focusedInWidget = (page) => page.evaluate(() => {
  const el = document.querySelector('[data-crm-chat]')?.shadowRoot?.activeElement;
  return el ? el.localName + (el.getAttribute('aria-label') ? `[${el.getAttribute('aria-label')}]` : '') : null;
});

const storedConversation = (page) => page.evaluate((key) => {
  try { return JSON.parse(localStorage.getItem(key)); } catch { return null; }
}, `crm_chat:${SITE}`);

/** Opens `path` of the demo site in a new page and the chat on it; waits for the greeting. */
async function openChat(context, path) {
  const page = await context.newPage();
  await page.goto(stack.web.url(path));
  await waitForTag(page);
  await launcher(page).waitFor({ state: 'visible', timeout: 10_000 }).catch((err) => {
    throw new Error(`the chat launcher did not appear on ${path} (does this crm build serve /widgets/chat-widget.js?): ${err.message}`);
  });
  await launcher(page).click();
  await panel(page).waitFor({ state: 'visible', timeout: 5_000 });
  await log(page).locator('[data-author="assistant"]').first().waitFor({ state: 'visible', timeout: 10_000 }).catch(async (err) => {
    throw new Error(`no greeting from the assistant after opening the chat (${err.message.split('\n')[0]})\n` +
      `messages shown: ${JSON.stringify(await shownMessages(page))}\nerror line: ${await chat(page).locator('[role="alert"]').textContent().catch(() => '?')}`);
  });
  return page;
}

/** Types `text` into the chat and presses Enter; waits until the widget shows it as sent. */
async function say(page, text) {
  await textarea(page).fill(text);
  await textarea(page).press('Enter');
  return waitForMessage(page, 'visitor', text);
}

/**
 * The staff side: the dashboard the crm server serves at its origin, in a browser context of its
 * own, signed in as admin through the login form (as dashboard-chat.test.mjs does) with the test
 * site selected. Returns { context, page, pageErrors }.
 */
async function openDashboard() {
  const context = await dashboardContext(stack.browser, stack.crm.url, { width: 1440, height: 900 });
  const pageErrors = [];
  try {
    const page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${stack.crm.url}/`);
    await page.locator('#login-username').waitFor({ timeout: 15_000 });
    await page.fill('#login-username', 'admin');
    await page.fill('#login-password', stack.crm.password);
    await page.click('.login-form button[type=submit]');
    await page.locator('#site-select').waitFor({ timeout: 15_000 });
    await page.selectOption('#site-select', SITE);
    await page.locator('[data-nav=chat]').waitFor({ timeout: 10_000 }).catch((err) => {
      throw new Error(`no Chat screen in the dashboard's navigation (does this crm build serve the dashboard with the chat inbox?): ${err.message}`);
    });
    return { context, page, pageErrors };
  } catch (err) {
    await context.close().catch(() => {});
    throw err;
  }
}

/** A direct request to the public chat API, sent like the widget sends it. */
async function publicChat(method, path, body) {
  const res = await fetch(`${stack.crm.url}/v1/chat/${SITE}/conversations${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'text/plain;charset=UTF-8' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed = text;
  try { parsed = JSON.parse(text); } catch { /* keep the text */ }
  return { status: res.status, body: parsed };
}

test('setup through the staff API: a published article and a chat_handoff alert rule', async () => {
  const { api, crm } = stack;
  const created = await api.request('POST', '/api/v1/kb/articles', ARTICLE);
  assert.equal(created.status, 201, `POST /api/v1/kb/articles: HTTP ${created.status} ${JSON.stringify(created.body)}`);
  state.article = created.body.data;
  assert.ok(state.article.slug, `the created article has a slug: ${JSON.stringify(state.article)}`);
  // Searchable before the visitor asks (typeahead searches are not counted in KB analytics).
  await poll('the article in public knowledge-base search', async () => {
    const res = await fetch(`${crm.url}/v1/kb/${SITE}/search?q=${encodeURIComponent('SAML single sign-on')}&typeahead=true`);
    const body = await res.json();
    return body.data?.hits?.some((h) => h.title === ARTICLE.title);
  }, { describe: async () => (await fetch(`${crm.url}/v1/kb/${SITE}/search?q=SAML&typeahead=true`)).text() });

  const rule = await api.request('POST', '/api/v1/alert-rules', {
    site_id: SITE, name: 'Chat handoff', condition: { type: 'chat_handoff' }, webhook_url: receiver.url,
  });
  assert.equal(rule.status, 201, `POST /api/v1/alert-rules with condition chat_handoff: HTTP ${rule.status} ${JSON.stringify(rule.body)}`);
  state.ruleId = rule.body.data.rule_id;
  assert.ok(state.ruleId, JSON.stringify(rule.body));
});

test('visitor: question answered with an article, email given, handed to a person, agent reply, resumed on the next page', async () => {
  need(state.article && state.ruleId, 'the setup');
  const context = await newContext(stack.browser);
  await recordChatEvents(context);
  const page = await openChat(context, '/pricing.html');
  state.visitor = { context, page };

  // The widget: open shadow root, accessible launcher and panel, focus in the textarea.
  assert.equal(await page.locator('[data-crm-chat]').count(), 1, 'one chat host on the page');
  assert.equal(await page.evaluate(() => document.querySelector('[data-crm-chat]').shadowRoot?.mode), 'open');
  assert.equal(await launcher(page).getAttribute('aria-expanded'), 'true', 'the launcher says the panel is expanded');
  assert.ok((await panel(page).getAttribute('aria-label'))?.trim(), 'the dialog has an aria-label (the title)');
  assert.equal(await log(page).getAttribute('aria-live'), 'polite');
  assert.equal(await textarea(page).getAttribute('maxlength'), '2000');
  assert.ok(await textarea(page).evaluate((t) => t.labels.length > 0 && t.labels[0].textContent.trim() !== ''), 'the textarea has a label');
  assert.equal(await focusedInWidget(page), 'textarea', 'opening the chat moves the focus to the textarea');

  const visitorId = await page.evaluate(() => localStorage.getItem('crm_vid'));
  assert.ok(visitorId, 'the tracker stored a visitor id');
  const opened = await poll('the crm:chat "opened" event', async () =>
    (await chatEvents(page)).find((e) => e.type === 'opened' && e.conversation_id), { timeout: 10_000 });
  const conversationId = opened.conversation_id;
  assert.deepEqual((await storedConversation(page))?.id, conversationId, `localStorage crm_chat:${SITE} holds the conversation`);
  assert.equal(await page.evaluate((key) => sessionStorage.getItem(key), `crm_chat_open:${SITE}`) !== null, true,
    'sessionStorage remembers that the panel is open');
  state.conversationId = conversationId;
  state.visitorId = visitorId;

  // The question; the answer links the article, as an absolute link to the help centre.
  const assistantBefore = await countMessages(page, 'assistant');
  await say(page, QUESTION);
  await waitForMoreMessages(page, 'assistant', assistantBefore);
  const link = log(page).locator('[data-author="assistant"] a').filter({ hasText: ARTICLE.title }).first();
  await link.waitFor({ state: 'visible', timeout: 10_000 }).catch(async (err) => {
    throw new Error(`the assistant's answer does not link "${ARTICLE.title}" (${err.message.split('\n')[0]})\n` +
      `messages shown: ${JSON.stringify(await shownMessages(page), null, 2)}`);
  });
  const href = await link.getAttribute('href');
  const url = new URL(href);
  assert.equal(url.origin, new URL(stack.crm.url).origin, `the article link ${href} points to the help centre on the crm origin`);
  assert.equal(url.pathname, `/help/${SITE}/a/${state.article.slug}`, `the article link ${href}`);
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.match(await link.getAttribute('rel') || '', /\bnoopener\b/);
  const article = await fetch(href);
  assert.equal(article.status, 200, `GET ${href} (the linked article page)`);
  // "Did this answer your question?" under the answer.
  const feedback = chat(page).getByRole('group', { name: 'Feedback' });
  await feedback.waitFor({ state: 'visible', timeout: 5_000 });
  assert.equal(await feedback.getByRole('button', { name: 'Yes', exact: true }).count(), 1);
  assert.equal(await feedback.getByRole('button', { name: 'No', exact: true }).count(), 1);
  await page.screenshot({ path: screenshotPath('chat-answer.png') });

  // The qualification flow asks for an email; the textarea becomes an email field.
  await chat(page).locator('textarea[inputmode="email"]').waitFor({ state: 'attached', timeout: 10_000 }).catch(async (err) => {
    throw new Error(`the assistant did not ask for an email (no message with expects "email") (${err.message.split('\n')[0]})\n` +
      `messages shown: ${JSON.stringify(await shownMessages(page), null, 2)}`);
  });
  const asked = (await chatEvents(page)).filter((e) => e.type === 'message' && e.message?.expects === 'email');
  assert.ok(asked.length > 0 && asked.every((e) => e.message.author === 'assistant'), 'the email question comes from the assistant');
  await say(page, EMAIL);

  // A person: the handoff notice, then the staff member's reply from the dashboard (polled).
  const beforeHandoff = await countMessages(page, 'assistant');
  await talkButton(page).click();
  await poll('the crm:chat "handoff" event', async () =>
    (await chatEvents(page)).some((e) => e.type === 'handoff' && e.conversation_id === conversationId), { timeout: 10_000 });
  await waitForMoreMessages(page, 'assistant', beforeHandoff);
  await talkButton(page).waitFor({ state: 'hidden', timeout: 5_000 });

  // The staff member signs in to the dashboard, finds the visitor waiting in the chat inbox
  // (named by the email they gave), opens the conversation and replies from the reply box.
  const staff = await openDashboard();
  state.staff = staff;
  const desk = staff.page;
  await desk.click('[data-nav=chat]');
  const row = desk.locator(`#chat-waiting [data-conversation="${conversationId}"]`);
  await row.waitFor({ timeout: 10_000 }).catch(async (err) => {
    throw new Error(`the handed-off conversation ${conversationId} is not waiting in the dashboard's chat inbox ` +
      `(${err.message.split('\n')[0]})\ninbox: ${await desk.locator('#chat-list').textContent().catch(() => '?')}`);
  });
  assert.equal(await row.getAttribute('data-status'), 'handed_off');
  assert.match(await row.textContent(), /Waiting/);
  assert.equal((await row.locator('.inbox-who').textContent()).trim(), EMAIL, 'the inbox names the visitor by the email they gave');
  await row.click();
  await desk.locator('#chat-transcript [data-author=visitor] .msg-text', { hasText: QUESTION }).waitFor({ timeout: 10_000 });
  assert.ok((await desk.evaluate(() => location.hash)).includes(`c=${conversationId}`), 'the route names the open conversation');
  await desk.click('#chat-reply');
  await desk.keyboard.type(AGENT_REPLY);
  await desk.keyboard.press('Enter');
  const sent = desk.locator('#chat-transcript [data-author=agent]', { hasText: AGENT_REPLY });
  await sent.first().waitFor({ timeout: 10_000 }).catch(async (err) => {
    throw new Error(`the dashboard does not show the sent reply (${err.message.split('\n')[0]})\n` +
      `reply error: ${await desk.locator('#chat-reply-error').textContent().catch(() => '?')}`);
  });
  assert.equal(await sent.count(), 1, 'the reply is shown once in the dashboard');
  assert.equal(await sent.locator('.msg-text').textContent(), AGENT_REPLY);
  assert.equal(await sent.locator('.msg-author').textContent(), 'admin');
  // (The reply box is emptied when the send returns; a poll of the open conversation may show the reply just before.)
  await desk.waitForFunction(() => document.querySelector('#chat-reply')?.value === '', undefined, { timeout: 5_000 }).catch(() => {});
  assert.equal(await desk.inputValue('#chat-reply'), '', 'the reply box is emptied');
  await desk.screenshot({ path: screenshotPath('chat-dashboard-reply.png'), fullPage: true });

  await waitForMessage(page, 'agent', AGENT_REPLY, 20_000);
  const agentEvent = (await chatEvents(page)).find((e) => e.type === 'message' && e.message?.author === 'agent');
  assert.equal(agentEvent?.message.agent, 'admin', `the agent message names the staff member: ${JSON.stringify(agentEvent)}`);
  await page.screenshot({ path: screenshotPath('chat-agent-reply.png') });
  assert.deepEqual(staff.pageErrors, [], 'no uncaught errors in the dashboard page');
  await staff.context.close();
  state.staff = undefined;

  // Each message shown once, even after several polls.
  await sleep(3_500);
  const before = await shownMessages(page);
  assert.equal(new Set(before.map((m) => m.id)).size, before.length, `no message shown twice: ${JSON.stringify(before, null, 2)}`);

  // Next page: the panel reopens by itself with the whole conversation.
  await Promise.all([page.waitForURL('**/docs/'), page.locator('a.nav-link[href="/docs/"]').click()]);
  await waitForTag(page);
  await panel(page).waitFor({ state: 'visible', timeout: 10_000 }).catch((err) => {
    throw new Error(`the chat panel did not reopen on the next page (it was open): ${err.message}`);
  });
  await waitForMessage(page, 'visitor', QUESTION);
  await waitForMessage(page, 'visitor', EMAIL);
  await waitForMessage(page, 'agent', AGENT_REPLY);
  await poll('every message of the conversation on the next page', async () => (await shownMessages(page)).length >= before.length,
    { timeout: 10_000, describe: () => shownMessages(page) });
  const resumed = await shownMessages(page);
  assert.deepEqual(ids(resumed), ids(before), 'the same messages, once each');
  assert.equal((await storedConversation(page))?.id, conversationId, 'the same conversation');
  const reopened = await poll('the "opened" event on the next page', async () =>
    (await chatEvents(page)).find((e) => e.type === 'opened'), { timeout: 10_000 });
  assert.equal(reopened.conversation_id, conversationId);
  await page.screenshot({ path: screenshotPath('chat-resumed.png') });

  // Escape closes the panel and gives the focus back to the launcher; the panel stays closed.
  await textarea(page).focus();
  await page.keyboard.press('Escape');
  await panel(page).waitFor({ state: 'hidden', timeout: 5_000 });
  assert.equal(await launcher(page).getAttribute('aria-expanded'), 'false');
  assert.equal(await focusedInWidget(page), 'button[Open chat]', 'Escape returns the focus to the launcher');
  assert.equal(await page.evaluate((key) => sessionStorage.getItem(key), `crm_chat_open:${SITE}`), null,
    'a closed panel is not reopened on the next page');

  // Reopening shows the same messages, still once each, after a few polls.
  await launcher(page).click();
  await panel(page).waitFor({ state: 'visible', timeout: 5_000 });
  await sleep(3_500);
  assert.deepEqual(ids(await shownMessages(page)), ids(before), 'reopening duplicates nothing');
  state.chatDone = true;
  // (The page would go on polling through the next tests.)
  await context.close();
  state.visitor = undefined;
});

test('the API: lead from the chat email with a score, the transcript on the visitor, the chat_handoff alert', async () => {
  need(state.chatDone, 'the visitor\'s chat');
  const { api } = stack;
  const leads = () => api.get(`/api/v1/leads?site_id=${SITE}`);
  const lead = await poll(`a lead for ${EMAIL}`, async () => (await leads()).find((l) => l.email === EMAIL),
    { timeout: 30_000, describe: leads });
  const detail = await api.get(`/api/v1/leads/${encodeURIComponent(lead.lead_id)}?site_id=${SITE}`);
  assert.equal(detail.email, EMAIL);
  assert.ok(detail.score > 0, `the chat lead has a score > 0: ${JSON.stringify({ score: detail.score, reasons: detail.score_reasons })}`);

  // The conversation (summary fields) with its whole transcript.
  const conversation = await api.get(`/api/v1/chat/conversations/${SITE}/${state.conversationId}`);
  const messages = conversation.transcript;
  assert.equal(conversation.conversation_id, state.conversationId);
  assert.equal(conversation.visitor_id, state.visitorId, 'the conversation is on the tracker\'s visitor');
  assert.equal(conversation.fields?.email, EMAIL, `the email given in the chat: ${JSON.stringify(conversation.fields)}`);
  assert.ok(Array.isArray(messages), `the conversation has its transcript: ${JSON.stringify(conversation)}`);
  const said = (author, text) => messages.some((m) => m.author === author && m.text === text);
  assert.ok(said('visitor', QUESTION), `the transcript has the question: ${JSON.stringify(messages, null, 2)}`);
  assert.ok(said('visitor', EMAIL), 'the transcript has the email answer');
  assert.ok(said('agent', AGENT_REPLY), 'the transcript has the agent reply');
  assert.ok(messages.some((m) => m.author === 'assistant'), 'the transcript has the assistant messages');

  const alerts = () => api.get(`/api/v1/alerts?site_id=${SITE}`);
  const alert = await poll('the chat_handoff alert', async () => (await alerts()).find((a) => a.rule_id === state.ruleId),
    { timeout: 45_000, describe: alerts });
  assert.equal(alert.lead_email, EMAIL, `the alert is for the visitor who gave their email: ${JSON.stringify(alert)}`);
  const rules = await api.get(`/api/v1/alert-rules?site_id=${SITE}`);
  assert.equal(rules.find((r) => r.rule_id === alert.rule_id)?.condition?.type, 'chat_handoff', JSON.stringify(rules));
  const hook = await poll('the alert webhook POST', async () => receiver.hits.find((h) => h.method === 'POST'),
    { timeout: 45_000, describe: async () => ({ alerts: await alerts(), received: receiver.hits }) });
  assert.equal(hook.path, '/hook');
  assert.match(hook.headers['x-crm-signature'] || '', /^sha256=/, 'a signed delivery');
  assert.equal(hook.body?.rule?.id, state.ruleId, `the webhook body names the rule: ${JSON.stringify(hook.body)}`);
  assert.equal(hook.body?.lead?.email, EMAIL, `the webhook body names the lead: ${JSON.stringify(hook.body)}`);
  await poll('the alert marked delivered', async () => (await alerts()).find((a) => a.rule_id === state.ruleId)?.status === 'delivered',
    { timeout: 15_000, describe: alerts });
});

test('hostile input: markup is shown as text, over-long messages are refused visibly, the widget stays usable', async () => {
  need(state.article, 'the setup');
  const context = await newContext(stack.browser);
  try {
    const page = await openChat(context, '/index.html');
    const conversation = await storedConversation(page);
    assert.ok(conversation?.id && conversation?.token, `a stored conversation: ${JSON.stringify(conversation)}`);

    // Markup in a message is text: no <img>, no handler ran (also after whatever the assistant
    // answers, e.g. an echo of the question; an answer is not required here).
    const assistantBefore = await countMessages(page, 'assistant');
    const message = await say(page, XSS);
    await waitForMoreMessages(page, 'assistant', assistantBefore, 5_000).catch(() => {});
    assert.ok((await message.textContent()).includes(XSS), 'the visitor message shows the markup as typed');
    const dom = await page.evaluate(() => ({
      shadowImages: document.querySelector('[data-crm-chat]').shadowRoot.querySelectorAll('img').length,
      pageImages: document.querySelectorAll('img[src="x"]').length,
      xss: window.__xss,
    }));
    assert.deepEqual(dom, { shadowImages: 0, pageImages: 0, xss: undefined });

    // 3000 characters: cut by maxlength, or refused with the visible message_too_long error.
    const error = chat(page).locator('[role="alert"]');
    const tooLong = chat(page).locator('[role="alert"][data-code="message_too_long"]');
    await textarea(page).fill('x'.repeat(3000));
    const typed = await textarea(page).evaluate((t) => t.value.length);
    if (typed > 2000) {
      await textarea(page).press('Enter');
      await tooLong.waitFor({ state: 'visible', timeout: 5_000 });
    }
    // A script can set a longer value: sending it shows the error and keeps the text.
    await textarea(page).evaluate((t) => { t.value = 'y'.repeat(3000); });
    await sendButton(page).click();
    await tooLong.waitFor({ state: 'visible', timeout: 5_000 });
    assert.match(await tooLong.textContent(), /too long/i);
    assert.equal(await textarea(page).evaluate((t) => t.value.length), 3000, 'the typed text is kept on error');
    // The server refuses it too.
    const refused = await publicChat('POST', `/${conversation.id}/messages`, { token: conversation.token, text: 'z'.repeat(3000), client_id: randomUUID() });
    assert.equal(refused.status, 413, JSON.stringify(refused.body));
    assert.equal(refused.body.error?.code, 'message_too_long');

    // 100 KB pasted: cut by maxlength, and the page stays responsive.
    const started = Date.now();
    await textarea(page).fill('p'.repeat(100_000));
    const pasted = await textarea(page).evaluate((t) => t.value.length);
    assert.ok(pasted <= 2000 || (await textarea(page).getAttribute('maxlength')) === '2000', `pasted length ${pasted}`);
    await page.evaluate(() => 1);
    assert.ok(Date.now() - started < 10_000, `100 KB of input took ${Date.now() - started} ms`);

    // Still usable: Shift+Enter is a new line, Enter sends, the error line goes away.
    await textarea(page).fill('Still there?');
    await textarea(page).press('Shift+Enter');
    await textarea(page).pressSequentially('Second line');
    assert.equal(await textarea(page).inputValue(), 'Still there?\nSecond line');
    await textarea(page).press('Enter');
    await waitForMessage(page, 'visitor', /Still there\?\s+Second line/);
    await error.waitFor({ state: 'hidden', timeout: 5_000 });
    assert.equal(await textarea(page).inputValue(), '', 'the textarea is emptied once sent');
    assert.equal(await page.evaluate(() => window.__xss), undefined);
    await page.screenshot({ path: screenshotPath('chat-hostile.png') });
  } finally {
    await context.close();
  }
});

test('feedback: "Yes" under an answer resolves the conversation', async () => {
  need(state.article, 'the setup');
  const context = await newContext(stack.browser);
  try {
    const page = await openChat(context, '/index.html');
    const conversation = await storedConversation(page);
    await say(page, QUESTION);
    const feedback = chat(page).getByRole('group', { name: 'Feedback' });
    await feedback.waitFor({ state: 'visible', timeout: 10_000 }).catch(async (err) => {
      throw new Error(`no "Did this answer your question?" under the answer (${err.message.split('\n')[0]})\n` +
        `messages shown: ${JSON.stringify(await shownMessages(page), null, 2)}`);
    });
    await feedback.getByRole('button', { name: 'Yes', exact: true }).click();
    await feedback.getByText(/thanks/i).waitFor({ state: 'visible', timeout: 5_000 });
    const current = () => publicChat('GET', `/${conversation.id}?token=${encodeURIComponent(conversation.token)}&after=0`);
    await poll('the conversation resolved', async () => (await current()).body.data?.status === 'resolved',
      { timeout: 10_000, describe: current });
  } finally {
    await context.close();
  }
});
