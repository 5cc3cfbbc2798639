// The router: #/new, #/chats, #/chat/<session id>, #/resources. Each view is `render(root, params, ctx)`;
// ctx.signal aborts its requests and ctx.onCleanup(fn) runs when the route changes.

import { watchServer } from './offline.js';
import { registerShell, startShell } from './shell.js';
import { h, put } from './ui.js';
import * as chat from './views/chat.js';
import * as chats from './views/chats.js';
import * as newChat from './views/new.js';
import * as resources from './views/resources.js';

const routes = [
  [/^#\/new$/, newChat, 'New chat', '#/new'],
  [/^#\/chats$/, chats, 'Chats', '#/chats'],
  [/^#\/chat\/([A-Za-z0-9_-]{1,128})$/, chat, 'Chat', '#/chats'],
  [/^#\/resources$/, resources, 'Resources', '#/resources'],
];

const main = document.getElementById('main');
const banner = document.getElementById('banner');
let current = null;

function showBanner(message) {
  put(banner, h('span', {}, message), h('button', { type: 'button', class: 'link', onclick: () => { banner.hidden = true; } }, 'Dismiss'));
  banner.hidden = false;
}

/** End the current view: its requests aborted, its cleanups run. */
function leave() {
  if (!current) return;
  current.controller.abort();
  for (const fn of current.cleanups.splice(0)) {
    try {
      fn();
    } catch (error) {
      showBanner(`Something went wrong while leaving the page: ${error.message}`);
    }
  }
}

const server = watchServer(main, { leave, resume: () => route() });

function route() {
  if (!location.hash || location.hash === '#' || location.hash === '#/') {
    location.replace('#/chats');
    return;
  }
  leave();
  if (server.offline) {
    server.show();
    return;
  }
  const controller = new AbortController();
  current = { controller, cleanups: [] };
  const ctx = { signal: controller.signal, onCleanup: (fn) => current.cleanups.push(fn) };
  put(main);
  banner.hidden = true;

  const found = routes.map(([pattern, view, title, nav]) => ({ match: location.hash.match(pattern), view, title, nav })).find((r) => r.match);
  for (const link of document.querySelectorAll('nav a')) {
    if (found && link.getAttribute('href') === found.nav) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (!found) {
    document.title = 'Not found · mecodes';
    main.append(h('h1', {}, 'Not found'), h('p', {}, 'There is no page at this address. ', h('a', { href: '#/chats' }, 'See the chats.')));
    return;
  }
  document.title = `${found.title} · mecodes`;
  found.view.render(main, found.match.slice(1).map(decodeURIComponent), ctx);
  // Move the keyboard (and a screen reader) to the new page, as a full page load would.
  const heading = main.querySelector('h1');
  if (heading) {
    heading.tabIndex = -1;
    heading.focus({ preventScroll: true });
  }
}

// Nothing fails silently: an error no view caught is shown, not just logged.
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason?.name === 'AbortError') {
    event.preventDefault();
    return;
  }
  event.preventDefault();
  showBanner(`Something went wrong: ${event.reason?.message || event.reason}`);
});
window.addEventListener('error', (event) => {
  event.preventDefault();
  showBanner(`Something went wrong: ${event.message}`);
});

// A new version of the shell takes over before anything renders (the page then reloads); offline.js speaks for
// a server that cannot be reached.
if (await startShell()) {
  window.addEventListener('hashchange', route);
  route();
  registerShell();
}
