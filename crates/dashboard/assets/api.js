// The control plane's HTTP APIs, as the CLI uses them. Reads are anonymous; a write that
// answers 401 asks for the token once and keeps it for this tab (sessionStorage).

import { askToken } from './dialogs.js';

const TOKEN_KEY = 'flotilla.token';

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

async function problem(res) {
  try {
    const body = await res.json();
    return body.detail || body.title;
  } catch {
    return res.statusText;
  }
}

export async function get(path) {
  const res = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) throw new ApiError(res.status, await problem(res));
  const type = res.headers.get('content-type') || '';
  return type.includes('json') ? res.json() : res.text();
}

export async function write(method, path, body) {
  for (let asked = false; ; asked = true) {
    const headers = { 'content-type': 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.authorization = `Bearer ${token}`;
    const init = { method, headers, body: body === undefined ? undefined : JSON.stringify(body) };
    const res = await fetch(path, init);
    if (res.status === 401 && !asked) {
      const entered = await askToken();
      if (!entered) throw new ApiError(401, 'cancelled: this action needs the token');
      sessionStorage.setItem(TOKEN_KEY, entered);
      continue;
    }
    if (!res.ok) throw new ApiError(res.status, await problem(res));
    return res.status === 204 ? null : res.json();
  }
}

// Path segments from data (service, stream, group names) are always encoded.
export function seg(value) {
  return encodeURIComponent(String(value));
}
