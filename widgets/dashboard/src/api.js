// The CRM API client and the login session: access token in memory only, refresh token in
// sessionStorage (rotated on every refresh), one shared refresh for concurrent 401s, and the
// error envelope turned into ApiError with a message fit to show (429 → "retry in N s").

const REFRESH_KEY = 'crm.dashboard.refresh_token';

export class ApiError extends Error {
  constructor(status, code, message, details = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

let accessToken = null;
let currentUser = null;
let refreshing = null;
const signedOutListeners = new Set();

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}

function storedRefresh() {
  return storage()?.getItem(REFRESH_KEY) || null;
}

function storeRefresh(token) {
  const store = storage();
  if (!store) return;
  if (token) store.setItem(REFRESH_KEY, token);
  else store.removeItem(REFRESH_KEY);
}

function adopt(data) {
  accessToken = data.access_token;
  currentUser = data.user || currentUser;
  // A login/refresh without refresh_token (an older server) leaves no way to refresh: forget
  // any stale one rather than replay it later.
  storeRefresh(data.refresh_token || null);
}

/** The signed-in user ({username, role}) or null. */
export function user() {
  return accessToken ? currentUser : null;
}

/** Called with a message when the session ends without the user asking (refresh failed). */
export function onSignedOut(listener) {
  signedOutListeners.add(listener);
  return () => signedOutListeners.delete(listener);
}

function endSession(reason) {
  const wasSignedIn = accessToken !== null || storedRefresh() !== null;
  accessToken = null;
  currentUser = null;
  storeRefresh(null);
  if (wasSignedIn && reason) for (const listener of signedOutListeners) listener(reason);
}

function retryAfterSeconds(res) {
  const header = res.headers.get('retry-after');
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
  const at = Date.parse(header);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** Reads a response: the envelope's data/meta, or an ApiError with a readable message. */
async function readEnvelope(res) {
  let body = null;
  const text = await res.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
  }
  if (res.ok && (res.status === 204 || body?.success === true)) return { data: body?.data ?? null, meta: body?.meta ?? null };
  const error = body && typeof body.error === 'object' && body.error ? body.error : {};
  const retryAfter = retryAfterSeconds(res);
  let message = typeof error.message === 'string' && error.message ? error.message : `Request failed (HTTP ${res.status})`;
  if (res.status === 429) message = `Rate limited, retry in ${retryAfter ?? 1} s`;
  else if (res.status === 503 && retryAfter !== null) message = `${message} (retry in ${retryAfter} s)`;
  throw new ApiError(res.status, error.code || `http_${res.status}`, message, error.details ?? null, retryAfter);
}

async function send(method, path, body, token, signal) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal,
    });
  } catch (err) {
    if (err?.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check your connection and try again.');
  }
}

async function doRefresh() {
  const token = storedRefresh();
  if (!token) return false;
  const res = await send('POST', '/api/v1/auth/refresh', { refresh_token: token });
  if (res.status === 429 || res.status >= 500) await readEnvelope(res); // throws: keep the token for a retry
  try {
    const { data } = await readEnvelope(res);
    if (data?.access_token) {
      adopt(data);
      return true;
    }
  } catch {
    // Refused (revoked, expired, reused) or no refresh endpoint.
  }
  storeRefresh(null); // a refused token never works again: don't replay it
  return false;
}

/** One refresh at a time: concurrent callers share its outcome. */
function refreshOnce() {
  refreshing ||= doRefresh().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/**
 * An authenticated API call. Returns { data, meta }. On 401 it refreshes once (shared with
 * concurrent calls) and retries; when that is impossible the session ends (onSignedOut).
 */
export async function request(method, path, { body, signal } = {}) {
  for (let attempt = 0; ; attempt++) {
    if (!accessToken && storedRefresh() && attempt === 0) await refreshOnce();
    const sentToken = accessToken;
    const res = await send(method, path, body, sentToken, signal);
    if (res.status !== 401 || attempt > 0) {
      if (res.status === 401) {
        endSession('Your session has expired. Please sign in again.');
      }
      return readEnvelope(res);
    }
    // Someone else refreshed while this request was in flight: just retry with the new token.
    if (accessToken && accessToken !== sentToken) continue;
    let refreshed = false;
    try {
      refreshed = await refreshOnce();
    } catch (err) {
      throw err instanceof ApiError ? err : new ApiError(0, 'network', String(err?.message || err));
    }
    if (!refreshed) {
      endSession('Your session has expired. Please sign in again.');
      return readEnvelope(res);
    }
  }
}

/**
 * GET with a query object (undefined/null/'' values are left out; an array value repeats its
 * parameter, e.g. { filter: ['page:is:/', 'device:is:pc'] }).
 */
export function get(path, query = {}, signal) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== undefined && one !== null && one !== '') params.append(key, String(one));
    }
  }
  const qs = params.toString();
  return request('GET', qs ? `${path}?${qs}` : path, { signal });
}

/** Tokens from a login answer, or a thrown ApiError when there are none. */
function signedIn(res, data) {
  if (!data?.access_token) throw new ApiError(res.status, 'bad_response', 'The server sent no access token.');
  adopt(data);
  return currentUser;
}

/**
 * Password step. Resolves to the user, or, for an account with a second factor (or one the
 * sign-in policy requires), to { secondFactor: 'totp' | 'totp_enroll', challenge }.
 */
export async function login(username, password) {
  const res = await send('POST', '/api/v1/auth/login', { username, password });
  const { data } = await readEnvelope(res);
  if (data?.second_factor && data?.challenge) return { secondFactor: data.second_factor, challenge: data.challenge };
  return signedIn(res, data);
}

/** Second step: a 6-digit code ({ code }) or a recovery code ({ recovery_code }). */
export async function loginSecondFactor(challenge, answer) {
  const res = await send('POST', '/api/v1/auth/login/totp', { challenge, ...answer });
  const { data } = await readEnvelope(res);
  return signedIn(res, data);
}

/** Enrolment the sign-in policy requires: { secret, otpauth_uri }. */
export async function loginEnroll(challenge) {
  const res = await send('POST', '/api/v1/auth/login/totp/enroll', { challenge });
  return (await readEnvelope(res)).data;
}

/** Confirms that enrolment with a first code: signs in, resolves to { user, recoveryCodes }. */
export async function loginConfirm(challenge, code) {
  const res = await send('POST', '/api/v1/auth/login/totp/confirm', { challenge, code });
  const { data } = await readEnvelope(res);
  const user = signedIn(res, data);
  return { user, recoveryCodes: data.recovery_codes || [] };
}

/** On page load: a stored refresh token gets a new access token. Resolves to the user or null. */
export async function resume() {
  if (accessToken) return currentUser;
  if (!storedRefresh()) return null;
  try {
    return (await refreshOnce()) ? currentUser : null;
  } catch {
    return null; // server unreachable: show the login form (the token stays for a later try)
  }
}

/** Revokes the refresh token on the server (best effort) and forgets both tokens. */
export async function logout() {
  const token = storedRefresh();
  try {
    if (token && accessToken) {
      let res = await send('POST', '/api/v1/auth/logout', { refresh_token: token }, accessToken);
      if (res.status === 401 && (await refreshOnce().catch(() => false))) {
        res = await send('POST', '/api/v1/auth/logout', { refresh_token: storedRefresh() }, accessToken);
      }
    }
  } catch {
    // Offline: the tokens are dropped here anyway; the refresh token expires on its own.
  } finally {
    endSession(null);
  }
}
