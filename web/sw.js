// The service worker: the app shell from a cache of its own version (the app opens at once, offline too), and
// push notifications. Nothing else is touched: API requests (/admin/*, opencode's /session, /event, ...) go
// straight to the network, never answered or kept here.
//
// bin/start writes this file into the run dir with the shell's version in place, a hash of web/ that it
// computes, so any change to a shell file changes these bytes and the browser installs the new worker. The new one
// waits until no page of the old version runs (a page asks it to take over at open when it is the only one, then
// reloads: shell.js), so a page never mixes old and new modules.

const VERSION = '{{env "MECODES_WEB_VERSION"}}';
const PREFIX = 'mecodes-shell-';
const CACHE = `${PREFIX}${VERSION}`;
// Every file of web/ but this one (tests/test_web_pwa.py checks that none is missing).
const SHELL = [
  '/',
  '/style.css',
  '/manifest.webmanifest',
  '/app.js',
  '/api.js',
  '/cost.js',
  '/events.js',
  '/markdown.js',
  '/offline.js',
  '/shell.js',
  '/ui.js',
  '/views/agent-picker.js',
  '/views/chat-changes.js',
  '/views/chat-inputs.js',
  '/views/chat.js',
  '/views/chats.js',
  '/views/image-attach.js',
  '/views/new.js',
  '/views/notifications.js',
  '/views/resources.js',
  '/vendor/marked.esm.js',
  '/vendor/purify.es.mjs',
  '/icons/apple-touch-icon.png',
  '/icons/icon-192.png',
  '/icons/icon-512.png',
  '/icons/icon-maskable-512.png',
];
const ICON = '/icons/icon-192.png';

self.addEventListener('install', (event) => {
  // Revalidated against the server (no stale copy from the HTTP cache); one missing file fails the install.
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: 'no-cache' })))));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names.filter((name) => name.startsWith(PREFIX) && name !== CACHE).map((name) => caches.delete(name)));
    await self.clients.claim(); // the first page, loaded before there was a worker, is controlled at once
  })());
});

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.search || !SHELL.includes(url.pathname)) return;
  event.respondWith(fromShell(request, url.pathname));
});

async function fromShell(request, path) {
  const cached = await (await caches.open(CACHE)).match(path);
  return cached || fetch(request); // evicted by the browser: the network, until the next install
}

// A page at open, when this worker waits: take over if it is the only page (it then reloads), else keep waiting.
self.addEventListener('message', (event) => {
  if (event.data?.type !== 'take-over-if-alone') return;
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const alone = pages.length <= 1;
    if (alone) await self.skipWaiting();
    event.ports[0]?.postMessage({ takingOver: alone });
  })());
});

// ---- push notifications: {kind, title, body, url, session_id, tag}

function readPush(data) {
  let payload = {};
  try {
    payload = data ? data.json() : {};
  } catch {
    payload = { body: data?.text?.() || '' };
  }
  if (!payload || typeof payload !== 'object') payload = {};
  const text = (value, fallback) => (typeof value === 'string' && value.trim() ? value.trim() : fallback);
  const url = text(payload.url, '/');
  return {
    title: text(payload.title, 'mecodes'),
    body: text(payload.body, 'Something happened in one of your chats.'),
    tag: text(payload.tag, undefined),
    url: url.startsWith('/') && !url.startsWith('//') ? url : '/',
    sessionId: text(payload.session_id, null),
  };
}

/** The route a page shows now, asked of the page itself (a client's url keeps the address it was opened at). */
function routeOf(page) {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => resolve(null), 1000);
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      resolve(event.data);
    };
    page.postMessage({ type: 'route' }, [channel.port2]);
  });
}

/** A page of this app, visible and focused, showing that very chat: it says so itself, no notification. */
async function chatInView(sessionId) {
  if (!sessionId) return false;
  const pages = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
  const seen = pages.filter((page) => page.focused && page.visibilityState === 'visible');
  return (await Promise.all(seen.map(routeOf))).includes(`#/chat/${sessionId}`);
}

self.addEventListener('push', (event) => {
  const push = readPush(event.data);
  event.waitUntil((async () => {
    if (await chatInView(push.sessionId)) return;
    await self.registration.showNotification(push.title, { body: push.body, tag: push.tag, icon: ICON, data: { url: push.url } });
  })());
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = new URL(event.notification.data?.url || '/', self.location.origin).href;
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    const page = pages.find((p) => p.focused) || pages.find((p) => p.visibilityState === 'visible') || pages[0];
    if (!page) {
      await self.clients.openWindow(url);
      return;
    }
    page.postMessage({ type: 'open', url }); // the page moves to the chat itself (shell.js): no reload
    try {
      await page.focus();
    } catch {
      // Focusing needs the click's user activation; without it the page has still moved.
    }
  })());
});
