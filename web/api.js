// Talking to the server: fetch with errors turned into plain words, job polling, and change notices
// shared between the tabs of this browser.

export class ApiError extends Error {
  constructor(message, status = 0, body = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }
}

const STATUS_WORDS = {
  401: 'The server asked for the password again. Reload the page to sign in.',
  403: 'The server refused this.',
  404: 'Not found.',
  409: 'The server refused this because of a conflict.',
  413: 'That is too large for the server.',
  422: 'The server refused the input.',
  500: 'The server hit an internal error.',
  502: 'A service behind the server did not answer properly (502).',
  503: 'The service is unavailable right now (503). Try again in a moment.',
  504: 'The server took too long to answer (504).',
};

function fieldErrors(errors) {
  // flask-smorest: {"json": {"repo": ["..."]}} or {"query": {...}}; keep the field names, drop the location.
  const found = [];
  const walk = (value, name) => {
    if (Array.isArray(value)) {
      if (value.every((v) => typeof v === 'string')) found.push(name ? `${name}: ${value.join(' ')}` : value.join(' '));
      else value.forEach((v) => walk(v, name));
    } else if (value && typeof value === 'object') {
      for (const [key, inner] of Object.entries(value)) {
        walk(inner, ['json', 'query', 'path', 'form'].includes(key) ? name : key);
      }
    }
  };
  walk(errors, '');
  return found.join('; ');
}

/** The message a person should read for a failed response: the server's own words when it gave any. */
export function errorMessage(status, body) {
  if (body && typeof body === 'object') {
    const own = body.message || body.data?.message || body.error?.message || (typeof body.error === 'string' && body.error);
    if (own && typeof own === 'string') return own;
    const fields = body.errors && fieldErrors(body.errors);
    if (fields) return `${STATUS_WORDS[status] || `The server answered ${status}.`} ${fields}`;
  } else if (typeof body === 'string' && body.trim() && body.length < 300 && !body.trimStart().startsWith('<')) {
    return body.trim();
  }
  return STATUS_WORDS[status] || `The server answered with status ${status}.`;
}

// A request that could not reach the server at all: offline.js decides, for the whole app, what the page shows.
const reachability = new EventTarget();
export const onUnreachable = (fn) => reachability.addEventListener('unreachable', fn);

/** JSON in, JSON out. Throws ApiError with a readable message; AbortError passes through untouched. */
export async function request(method, path, body, { signal } = {}) {
  const init = { method, signal, cache: 'no-store', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  for (let attempt = 1; ; attempt += 1) {
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (error.name === 'AbortError') throw error;
      reachability.dispatchEvent(new Event('unreachable'));
      const offline = navigator.onLine === false;
      throw new ApiError(
        offline ? 'You are offline. Check your connection, then try again.' : 'Could not reach the server. Check your connection, then try again.',
      );
    }
    // The login gate, just restarted, checks the password once and tells the requests meanwhile to retry in a
    // second (nothing was done for them): the app, opened at once from its cache after a deploy, sends several.
    const retryAfter = Number(response.headers.get('Retry-After'));
    if (response.status !== 503 || !(retryAfter > 0) || attempt === 3) break;
    await sleep(Math.min(retryAfter, 5) * 1000, signal);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) throw new ApiError(errorMessage(response.status, data), response.status, data);
  return data;
}

export const get = (path, opts) => request('GET', path, undefined, opts);
export const post = (path, body, opts) => request('POST', path, body ?? {}, opts);
export const del = (path, opts) => request('DELETE', path, undefined, opts);

/** `path` with query parameters (undefined and null values left out). */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== null) query.set(key, value);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

export const TERMINAL = new Set(['finished', 'failed', 'canceled', 'stopped']);

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      reject(new DOMException('aborted', 'AbortError'));
    }, { once: true });
  });
}

/** Poll a sidecar job until it ends; `onUpdate(job)` sees every state. Returns the last state. */
export async function pollJob(job, onUpdate, signal) {
  let current = job;
  onUpdate?.(current);
  let failures = 0;
  while (!TERMINAL.has(current.status)) {
    await sleep(600, signal);
    try {
      current = await get(current.url, { signal });
      failures = 0;
    } catch (error) {
      // A blip (the phone switching networks) is retried a few times before it is shown.
      if (error.name === 'AbortError' || error.status === 404 || ++failures > 5) throw error;
      continue;
    }
    onUpdate?.(current);
  }
  return current;
}

/** The job's outcome in words when it did not finish. */
export function jobFailure(job) {
  if (job.status === 'finished') return null;
  return job.error || `The job ended ${job.status}.`;
}

// ---- tabs of this browser tell each other what changed, so they stay consistent

const channel = 'BroadcastChannel' in window ? new BroadcastChannel('mecodes') : null;
const local = new EventTarget();

export function announce(what) {
  channel?.postMessage({ what });
  local.dispatchEvent(new CustomEvent('change', { detail: { what } }));
}

/** Call `fn(what)` whenever this or another tab changed something. Returns the unsubscribe function. */
export function onChange(fn) {
  const fromTab = (event) => fn(event.data?.what);
  const fromHere = (event) => fn(event.detail.what);
  channel?.addEventListener('message', fromTab);
  local.addEventListener('change', fromHere);
  return () => {
    channel?.removeEventListener('message', fromTab);
    local.removeEventListener('change', fromHere);
  };
}

// ---- chats being set up, remembered across page loads and shared by the tabs (localStorage)

const PENDING = 'mecodes.pendingChats';

export function pendingChats() {
  try {
    const list = JSON.parse(localStorage.getItem(PENDING) || '[]');
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

export function rememberChat(entry) {
  localStorage.setItem(PENDING, JSON.stringify([entry, ...pendingChats().filter((p) => p.id !== entry.id)].slice(0, 10)));
  announce('pending');
}

export function forgetChat(id) {
  localStorage.setItem(PENDING, JSON.stringify(pendingChats().filter((p) => p.id !== id)));
  announce('pending');
}

export function onPendingChange(fn) {
  const listener = (event) => event.key === PENDING && fn();
  window.addEventListener('storage', listener);
  return () => window.removeEventListener('storage', listener);
}
