// Small DOM helpers: building elements (text only, never HTML strings), formatting, dialogs, errors.

/** h('a', {href: '#', class: 'x', onclick: fn}, 'text', child, [more]) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return '—';
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} days`;
}

/** "3 min ago" for a Date, an ISO string, or epoch seconds/milliseconds. */
export function ago(value) {
  const date = toDate(value);
  if (!date) return '—';
  const seconds = (Date.now() - date.getTime()) / 1000;
  if (seconds < 0) return `in ${duration(-seconds)}`;
  if (seconds < 45) return 'just now';
  return `${duration(seconds)} ago`;
}

export function toDate(value) {
  if (value === null || value === undefined || value === '') return null;
  if (value instanceof Date) return value;
  if (typeof value === 'number') return new Date(value < 1e12 ? value * 1000 : value);
  // The sidecar's datetimes may come without a zone; they are UTC.
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function when(value) {
  const date = toDate(value);
  return date ? h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, ago(date)) : '—';
}

export function plural(n, one, many = `${one}s`) {
  return `${n} ${n === 1 ? one : many}`;
}

/** A status pill: idle, busy, retry, error, finished, failed, ... */
export function badge(text, kind = text) {
  return h('span', { class: `badge badge-${String(kind).replace(/[^a-z]/gi, '')}` }, text);
}

/** An error box that reads the message out (role=alert). Ignores aborted requests. */
export function errorBox(error, prefix) {
  if (!error || error.name === 'AbortError') return null;
  const message = error.message || String(error);
  return h('p', { class: 'error', role: 'alert' }, prefix ? `${prefix}: ` : '', h('span', { class: 'error-text' }, message));
}

export function isAbort(error) {
  return error?.name === 'AbortError';
}

/** Replace the children of `el`. */
export function put(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Disable `button` while `work()` runs; the returned promise never rejects (errors go to `onError`). */
export async function busy(button, work, onError) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } catch (error) {
    if (!isAbort(error)) onError?.(error);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
    button.textContent = label;
  }
}

/** A modal question; resolves true when confirmed. Keyboard: Esc cancels, focus starts on Cancel. */
export function confirmDialog({ title, message, confirm = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    const cancelButton = h('button', { type: 'button', value: 'cancel', class: 'button' }, 'Cancel');
    const okButton = h('button', { type: 'submit', value: 'ok', class: danger ? 'button danger' : 'button primary' }, confirm);
    const dialog = h(
      'dialog',
      { class: 'dialog', 'aria-labelledby': 'dialog-title' },
      h(
        'form',
        { method: 'dialog' },
        h('h2', { id: 'dialog-title' }, title),
        message ? h('p', { class: 'dialog-message' }, message) : null,
        h('div', { class: 'row end' }, cancelButton, okButton),
      ),
    );
    cancelButton.addEventListener('click', () => dialog.close('cancel'));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'ok');
    });
    document.body.append(dialog);
    dialog.showModal();
    cancelButton.focus();
  });
}

/** A bar for 0..1 (or null: indeterminate), labelled for screen readers. */
export function progressBar(fraction, label) {
  const bar = h('div', { class: 'progress', role: 'progressbar', 'aria-label': label, 'aria-valuemin': '0', 'aria-valuemax': '100' });
  const fill = h('div', { class: 'progress-fill' });
  bar.append(fill);
  if (fraction === null || fraction === undefined) {
    bar.classList.add('indeterminate');
  } else {
    const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    bar.setAttribute('aria-valuenow', String(percent));
    fill.style.width = `${percent}%`;
  }
  return bar;
}

/** Run `fn` at most once per `ms`, trailing. */
export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** Run `fn` at most once per `ms`: the first call schedules it, later calls within `ms` join that run. */
export function throttle(fn, ms) {
  let timer = null;
  const wrapped = () => {
    if (timer === null) timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
  wrapped.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return wrapped;
}

/** Calls `fn` when the page becomes visible again (the phone woke up, the tab came back). */
export function onVisible(fn) {
  const listener = () => document.visibilityState === 'visible' && fn();
  document.addEventListener('visibilitychange', listener);
  return () => document.removeEventListener('visibilitychange', listener);
}
