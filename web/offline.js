// When the server cannot be reached: one screen says so in place of the page (no view shows its own errors, nothing
// stale is shown), the server is tried again by itself, and the page comes back once it answers.

import { onUnreachable } from './api.js';
import { h, put } from './ui.js';

const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 15000;

/**
 * 'up', 'down' (no connection, or no answer in time) or 'busy': the login gate, just restarted, is checking the
 * password once (503 with Retry-After). The probe passes the login, as the views' requests will: once it is through,
 * they are let in at once instead of being told to retry.
 */
async function probe() {
  try {
    const response = await fetch('/admin/jobs?limit=1', { cache: 'no-store', signal: AbortSignal.timeout(8000) });
    return response.status === 503 && response.headers.has('Retry-After') ? 'busy' : 'up';
  } catch {
    return 'down';
  }
}

/**
 * watchServer(main, {leave, resume}) → {offline, show()}: `leave()` ends the current view, `resume()` renders the
 * route again once the server answers.
 */
export function watchServer(main, { leave, resume }) {
  let offline = false;
  let checking = false;
  let timer = null;
  let wait = FIRST_RETRY_MS;

  function show() {
    document.title = 'Offline · mecodes';
    put(
      main,
      h(
        'section',
        { class: 'offline', 'aria-live': 'polite' },
        h('h1', {}, 'Offline'),
        h('p', {}, "The server can't be reached. Nothing stale is shown; retrying by itself…"),
        h('p', { class: 'hint' }, 'Check the connection of this device. If it is fine, the server may be restarting or stopped.'),
        h('button', { type: 'button', class: 'button', onclick: () => check() }, 'Try now'),
      ),
    );
  }

  async function check() {
    if (checking) return;
    checking = true;
    clearTimeout(timer);
    const state = await probe();
    checking = false;
    if (state === 'busy') {
      timer = setTimeout(check, FIRST_RETRY_MS);
      return;
    }
    if (state === 'up') {
      wait = FIRST_RETRY_MS;
      if (offline) {
        offline = false;
        resume();
      }
      return;
    }
    if (!offline) {
      offline = true;
      leave();
      show();
    }
    timer = setTimeout(check, wait);
    wait = Math.min(LAST_RETRY_MS, wait * 2);
  }

  onUnreachable(() => check());
  window.addEventListener('offline', () => check());
  window.addEventListener('online', () => offline && check());
  document.addEventListener('visibilitychange', () => offline && document.visibilityState === 'visible' && check());
  return {
    get offline() {
      return offline;
    },
    show,
  };
}
