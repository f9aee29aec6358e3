// The admin REST API, with the JWT from /auth/login kept in sessionStorage (gone when the tab closes).
const TOKEN = 'llm-gateway.admin.token';
const USER = 'llm-gateway.admin.user';

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The master key is kept in this module only, never in storage: a reload asks for it again.
let operatorKey = null;
const OPERATOR = { email: 'master key', role: 'operator' };

export const session = {
  get token() {
    return operatorKey ?? sessionStorage.getItem(TOKEN);
  },
  get user() {
    if (operatorKey) return OPERATOR;
    try {
      return JSON.parse(sessionStorage.getItem(USER) ?? 'null');
    } catch {
      return null;
    }
  },
  save(token, user) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(USER, JSON.stringify(user));
  },
  operator(key) {
    operatorKey = key;
  },
  clear() {
    operatorKey = null;
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(USER);
  },
};

/** Called with the error when the API answers 401 to a logged-in call (expired or revoked login). */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** fetch + JSON; a non-2xx answer throws ApiError with the API's error.message. */
export async function api(method, path, body, extraHeaders = {}) {
  const headers = { Accept: 'application/json', ...extraHeaders };
  const token = session.token;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'The gateway did not answer (network error). Try again.', 'network_error');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const message = data?.error?.message ?? `${res.status} ${res.statusText}`;
    const err = new ApiError(res.status, message, data?.error?.code ?? null);
    if (res.status === 401 && token) onUnauthorized(err);
    throw err;
  }
  return data;
}

export const login = (email, password, tenant) =>
  api('POST', '/auth/login', tenant ? { email, password, tenant } : { email, password });
export function listKeys(limit, offset, filters = {}) {
  const q = new URLSearchParams({ limit: String(limit), offset: String(offset) });
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  return api('GET', `/api/v1/api-keys?${q}`);
}
export const updateKey = (id, patch) => api('PATCH', `/api/v1/api-keys/${encodeURIComponent(id)}`, patch);
export const createKey = (body) => api('POST', '/api/v1/api-keys', body);
export const regenerateKey = (id, graceSeconds) =>
  api('POST', `/api/v1/api-keys/${encodeURIComponent(id)}/regenerate`, {
    grace_period_seconds: graceSeconds,
  });
export const deleteKey = (id) => api('DELETE', `/api/v1/api-keys/${encodeURIComponent(id)}`);
export const keyUsage = (id) => api('GET', `/api/v1/api-keys/${encodeURIComponent(id)}/usage`);
export const usageByDay = (id, from, to) =>
  api(
    'GET',
    `/api/v1/usage?group_by=day&api_key_id=${encodeURIComponent(id)}&from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`,
  );

export function auditLog({ action, cursor, limit = 50 } = {}) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (action) q.set('action', action);
  if (cursor) q.set('cursor', cursor);
  return api('GET', `/api/v1/audit-log?${q}`);
}

/** Every user of the tenant (admins only), for the owner column and the owner choice. */
export async function listAllUsers() {
  const out = [];
  for (let offset = 0; offset < 2000; offset += 100) {
    const page = await api('GET', `/api/v1/users?limit=100&offset=${offset}`);
    out.push(...page.data);
    if (out.length >= page.total || !page.data.length) break;
  }
  return out;
}
