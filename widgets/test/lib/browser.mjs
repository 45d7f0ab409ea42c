// Chromium through playwright-core, plus helpers the widget tests share.
import { execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { CHROMIUM, REPO_ROOT, requireExecutable } from './env.mjs';

export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];

/**
 * A desktop Chrome user agent for this Chromium's version. Headless Chromium says
 * "HeadlessChrome", which the processor rightly flags as a bot (and a visitor with one bot event
 * is a bot for good). Playwright's per-context `userAgent` is not applied to the keepalive
 * beacons a page sends while it unloads for a navigation, so the browser gets it with
 * --user-agent instead: every request then carries the same one, as in a real browser.
 */
function desktopUserAgent() {
  const version = execFileSync(CHROMIUM, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const major = (/(\d+)\.\d+\.\d+/.exec(version) || [])[1];
  if (!major) throw new Error(`cannot read the version of ${CHROMIUM}: ${JSON.stringify(version)}`);
  return `Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${major}.0.0.0 Safari/537.36`;
}

let USER_AGENT;

/**
 * The user agent the browser sends, also for requests a test makes itself: read before the
 * browser is launched it would be undefined, and Node would send the word "undefined", which
 * the bot list rightly takes for a script.
 */
export function browserUserAgent() {
  requireExecutable(CHROMIUM, 'Install Debian\'s chromium (`apt-get install chromium`) or set CHROMIUM_BIN.');
  USER_AGENT ||= desktopUserAgent();
  return USER_AGENT;
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...CHROMIUM_ARGS, `--user-agent=${browserUserAgent()}`] });
}

/**
 * Where the pages get the widget scripts. Default ("binary"): from the crm server, which serves
 * the copies compiled into it. WIDGETS_FROM=dist serves widgets/dist/*.min.js and
 * WIDGETS_FROM=source serves widgets/*.js from this checkout instead, to try widget changes
 * without rebuilding the binary.
 */
const WIDGETS_FROM = process.env.WIDGETS_FROM || 'binary';
const WIDGET_FILES = {
  dist: {
    'tracking.js': 'widgets/dist/tracking.min.js',
    'forms-embed.js': 'widgets/dist/forms-embed.min.js',
    'chat-widget.js': 'widgets/dist/chat-widget.min.js',
  },
  source: { 'tracking.js': 'widgets/tracking.js', 'forms-embed.js': 'widgets/forms-embed.js', 'chat-widget.js': 'widgets/chat-widget.js' },
};

export async function newContext(browser, options = {}) {
  const context = await browser.newContext({ userAgent: browserUserAgent(), viewport: { width: 1280, height: 720 }, ...options });
  if (WIDGETS_FROM !== 'binary') {
    const files = WIDGET_FILES[WIDGETS_FROM];
    if (!files) throw new Error(`WIDGETS_FROM must be binary, dist or source, not ${WIDGETS_FROM}`);
    await context.route(/\/widgets\/(tracking|forms-embed|chat-widget)\.js(\?.*)?$/, (route) => {
      const name = new URL(route.request().url()).pathname.split('/').pop();
      route.fulfill({ path: join(REPO_ROOT, files[name]), contentType: 'application/javascript; charset=utf-8' });
    });
  }
  return context;
}

/**
 * Headless Chromium keeps every page "visible": bringing another page to the front, minimizing
 * the window (Browser.setWindowBounds), Target.activateTarget and Page.setWebLifecycleState all
 * leave document.visibilityState at "visible" and fire no visibilitychange. So a tab switch is
 * emulated the way the browser reports one to the page: document.visibilityState and
 * document.hidden change, then a visibilitychange event is dispatched at the document. Showing
 * the page again removes the override, so the browser's own values (and its own
 * visibilitychange when the page unloads) apply from then on.
 */
export async function setPageHidden(page, hidden) {
  const state = await page.evaluate((hide) => {
    for (const [name, value] of [['hidden', true], ['visibilityState', 'hidden']]) {
      if (hide) Object.defineProperty(document, name, { configurable: true, get: () => value });
      else delete document[name]; // back to Document.prototype's getter
    }
    document.dispatchEvent(new Event('visibilitychange', { bubbles: true }));
    return document.visibilityState;
  }, hidden);
  if (state !== (hidden ? 'hidden' : 'visible')) throw new Error(`visibilityState is ${state} after setPageHidden(${hidden})`);
}

/**
 * Records the requests the context sends to the collector's POST /v1/events, with the events
 * they carried. Requests sent while a page unloads or closes are often not reported to
 * Playwright, so this shows what live pages sent; what arrived is for the API to tell.
 */
export function recordBeacons(context, collectorUrl) {
  const sent = [];
  context.on('request', (request) => {
    if (!request.url().startsWith(collectorUrl + '/v1/events')) return;
    let events = [];
    try { events = JSON.parse(request.postData() || '{}').events || []; } catch { /* keep [] */ }
    sent.push({
      at: Date.now(),
      method: request.method(),
      resourceType: request.resourceType(),
      contentType: request.headers()['content-type'],
      events,
    });
  });
  return sent;
}

/** Waits until the tracking tag runs on the page (window.crm.v is set once it has started). */
export async function waitForTag(page) {
  await page.waitForFunction(() => window.crm && window.crm.v === 1, undefined, { timeout: 10_000 });
}
