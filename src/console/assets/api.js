// The admin API, with the admin token. The token lives in this module's memory only:
// never in a URL, a cookie, localStorage or sessionStorage. Reloading the page or
// signing out forgets it.

let token = null;
const signedOutListeners = [];

/** The service's root: the console is served at <root>/console/. */
export const root = new URL('../', document.baseURI);

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const error = body && body.error ? body.error : {};
    super(error.message || `the service answered ${status}`);
    this.status = status;
    this.code = error.code || String(status);
    this.details = Array.isArray(error.details) ? error.details : [];
    this.retryAfter = retryAfter;
  }
}

/** Thrown by a call made without a token (after sign-out): nothing was sent. */
export class SignedOut extends Error {
  constructor() {
    super('signed out');
  }
}

export function signIn(candidate) {
  token = candidate;
}

export function signOut() {
  token = null;
}

export function signedIn() {
  return token !== null;
}

/** `listener()` runs when the service refuses the token (revoked, say). */
export function onRefused(listener) {
  signedOutListeners.push(listener);
}

/** The Authorization header, for the live tail's own fetch. */
export function authorization() {
  if (token === null) throw new SignedOut();
  return `Bearer ${token}`;
}

export function url(path, query) {
  const target = new URL(path.replace(/^\//, ''), root);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') target.searchParams.set(name, value);
  }
  return target;
}

/**
 * Calls the admin API. `body` is sent as JSON (a string is sent as written: a
 * blueprint keeps its text). Answers `{json, text}` with `raw`, else the parsed JSON
 * (null for 204). An error answer throws ApiError with Signal's code, message and
 * details. A refused token signs out, unless the call is the sign-in's `probe`.
 */
export async function api(method, path, { body, query, raw = false, signal, probe = false } = {}) {
  const headers = { Authorization: authorization(), Accept: 'application/json' };
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const response = await fetch(url(path, query), {
    method,
    headers,
    body: payload,
    signal,
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  const text = response.status === 204 ? '' : await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, json, response.headers.get('Retry-After'));
    if (response.status === 401 && token !== null && !probe) {
      for (const listener of signedOutListeners) listener(error);
    }
    throw error;
  }
  return raw ? { json, text } : json;
}

export const get = (path, query, options = {}) => api('GET', path, { query, ...options });
export const post = (path, body, options = {}) => api('POST', path, { body, ...options });
export const patch = (path, body) => api('PATCH', path, { body });
export const put = (path, body, options = {}) => api('PUT', path, { body, ...options });
export const del = (path, query) => api('DELETE', path, { query });

/** `/v1/admin/integrations/{id}...` with the id escaped. */
export function integrationPath(id, rest = '') {
  return `/v1/admin/integrations/${encodeURIComponent(id)}${rest}`;
}
