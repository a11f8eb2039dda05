// Talks to the hub's REST API with the session cookie. Changing requests carry the session's CSRF token; a 401 sends
// the page back to sign-in; an error answer ({"error": "…"}) becomes an ApiError with the hub's own message.

/** The signed-in session: { name, role, csrf, expires }, or null. */
export const session = { current: null };

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let onSignedOut = () => {};

/** Called when the hub answers 401 (the session ended, the token was revoked). */
export function whenSignedOut(fn) {
  onSignedOut = fn;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === 'string') return body.error;
  } catch {
    // not JSON: fall through
  }
  return `HTTP ${response.status}`;
}

/** A request to the hub; answers the parsed JSON (null for 204), throws ApiError otherwise. */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && session.current) headers['X-CSRF-Token'] = session.current.csrf;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', signal,
  });
  if (response.status === 401 && !path.startsWith('/api/session')) {
    session.current = null;
    onSignedOut();
  }
  if (!response.ok) throw new ApiError(response.status, await errorOf(response));
  return response.status === 204 ? null : response.json();
}

/** Like api(), but answers `fallback()`'s result when the hub has no such endpoint (404 from an older hub). */
export async function apiOr(path, fallback) {
  try {
    return await api(path);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404 && /^no such API/.test(e.message)) return fallback();
    throw e;
  }
}

export const get = (path) => api(path);
export const post = (path, body) => api(path, { method: 'POST', body: body ?? {} });

export async function signIn(token) {
  session.current = await api('/api/session', { method: 'POST', body: { token } });
  return session.current;
}

export async function whoAmI() {
  try {
    session.current = await api('/api/session');
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
    session.current = null;
  }
  return session.current;
}

export async function signOut() {
  try {
    await api('/api/session', { method: 'DELETE' });
  } finally {
    session.current = null;
  }
}

export const isOperator = () => session.current?.role === 'operator';

/** Builds a query string from the defined, non-empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}
