// A small client for the CRM API (envelopes, bearer token) and the polling helper.
import { sleep } from './env.mjs';

export class ApiError extends Error {
  constructor(method, path, status, body) {
    super(`${method} ${path} → HTTP ${status}: ${typeof body === 'string' ? body : JSON.stringify(body)}`);
    this.status = status;
    this.body = body;
  }
}

export class Api {
  constructor(baseUrl, token) {
    this.baseUrl = baseUrl;
    this.token = token;
  }

  static async login(baseUrl, password) {
    const anonymous = new Api(baseUrl);
    const data = await anonymous.data('POST', '/api/v1/auth/login', { username: 'admin', password });
    return new Api(baseUrl, data.access_token);
  }

  /** Any request; returns { status, body } (body parsed as JSON when possible). */
  async request(method, path, body) {
    const headers = { accept: 'application/json' };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(this.baseUrl + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let parsed = text;
    try { parsed = JSON.parse(text); } catch { /* keep the text */ }
    return { status: res.status, body: parsed };
  }

  /** A request that must succeed; returns the envelope's `data`. */
  async data(method, path, body) {
    const { status, body: reply } = await this.request(method, path, body);
    if (status >= 300 || !reply || reply.success !== true) throw new ApiError(method, path, status, reply);
    return reply.data;
  }

  get(path) {
    return this.data('GET', path);
  }

  post(path, body) {
    return this.data('POST', path, body);
  }

  /** A visitor's whole timeline, oldest first (the API pages newest first). */
  async events(siteId, visitorId) {
    const items = [];
    let cursor;
    do {
      const query = new URLSearchParams({ site_id: siteId, limit: '500', ...(cursor ? { cursor } : {}) });
      const { status, body } = await this.request('GET', `/api/v1/visitors/${encodeURIComponent(visitorId)}/events?${query}`);
      if (status === 404) return [];
      if (status !== 200 || !body.success) throw new ApiError('GET', 'visitor events', status, body);
      items.push(...body.data);
      cursor = body.meta && body.meta.next_cursor;
    } while (cursor);
    return items.sort((a, b) => a.ts_ms - b.ts_ms);
  }

  async visitors(siteId) {
    return this.get(`/api/v1/visitors?site_id=${encodeURIComponent(siteId)}&limit=200&bots=exclude`);
  }

  /** The visitor's profile, or undefined while it does not exist yet. */
  async visitor(siteId, visitorId) {
    const { status, body } = await this.request('GET', `/api/v1/visitors/${encodeURIComponent(visitorId)}?site_id=${encodeURIComponent(siteId)}`);
    if (status === 404) return undefined;
    if (status !== 200 || !body.success) throw new ApiError('GET', 'visitor', status, body);
    return body.data;
  }
}

/**
 * Calls `check` every `interval` ms until it returns something other than undefined/null/false,
 * and returns that. On timeout, fails with `describe()`'s output (what the API returns now).
 */
export async function poll(what, check, { timeout = 30_000, interval = 200, describe } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== null && value !== false) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) break;
    await sleep(interval);
  }
  let state = '';
  if (describe) {
    try {
      const current = await describe();
      state = typeof current === 'string' ? current : JSON.stringify(current, null, 2);
    } catch (err) {
      state = `(describe failed: ${err.message})`;
    }
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what}` +
    (lastError ? `\nlast error: ${lastError.stack || lastError}` : '') +
    (state ? `\nwhat the API returns now:\n${state}` : ''));
}
