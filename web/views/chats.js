// Chats: opencode's sessions joined with the worktrees (GET /admin/chats), those waiting on the person first, then
// newest activity first. Kept fresh by opencode's global event stream, other tabs' changes, and coming back to the page.

import { get, onChange, onPendingChange, pendingChats } from '../api.js';
import { usageDetail, usageText } from '../cost.js';
import { stream } from '../events.js';
import { badge, bytes, errorBox, h, isAbort, onVisible, plural, put, throttle, when } from '../ui.js';

const CACHE = 'mecodes.chats';
const STATUS = { idle: 'idle', busy: 'busy', retry: 'error · retrying', error: 'error', interrupted: 'interrupted', 'needs-input': 'needs your input' };
const KIND = { retry: 'error', interrupted: 'warn' };

function statusBadge(status) {
  if (!status) return badge('no session', 'muted');
  return badge(STATUS[status] || status, KIND[status] || status);
}

function flags(chat) {
  return [
    chat.dirty ? badge('uncommitted changes', 'warn') : null,
    chat.unpushed_commits ? badge(`${plural(chat.unpushed_commits, 'unpushed commit')}`, 'warn') : null,
    chat.has_session && !chat.has_worktree ? badge('no worktree', 'muted') : null,
  ];
}

function chatItem(chat) {
  const title = chat.title || chat.worktree || chat.session_id || 'Untitled';
  const body = [
    h('span', { class: 'item-title' }, title),
    h('span', { class: 'item-meta' }, [chat.repo, chat.branch].filter(Boolean).join(' · ') || '—'),
    h('span', { class: 'item-meta' }, statusBadge(chat.status), ' ', flags(chat), ' ', chat.disk_bytes ? `${bytes(chat.disk_bytes)} · ` : '', when(chat.last_activity)),
    usageText(chat) ? h('span', { class: 'item-meta chat-usage', title: usageDetail(chat) }, usageText(chat)) : null,
    chat.last_error ? h('span', { class: 'item-meta error-text' }, `The last reply failed: ${chat.last_error}`) : null,
    chat.interruption ? h('span', { class: 'item-meta warn-text' }, `Interrupted: ${chat.interruption.why}. Open it to continue.`) : null,
    chat.waiting_for ? h('span', { class: 'item-meta warn-text' }, `${chat.waiting_for.kind === 'question' ? 'Asks you' : 'Asks permission'}: ${chat.waiting_for.summary}`) : null,
  ];
  if (chat.has_session && chat.session_id) {
    return h('li', {}, h('a', { class: 'item', href: `#/chat/${encodeURIComponent(chat.session_id)}`, 'data-session': chat.session_id }, body));
  }
  return h('li', {}, h('div', { class: 'item', 'data-worktree': chat.worktree }, body, h('span', { class: 'hint' }, 'A worktree without a session: see Resources.')));
}

export function render(root, _params, ctx) {
  const list = h('ul', { class: 'list', 'aria-label': 'Chats' });
  const state = h('div', { 'aria-live': 'polite' });
  const pending = h('div');
  const refresh = h('button', { type: 'button', class: 'button', onclick: () => load() }, 'Refresh');
  put(
    root,
    h('div', { class: 'row spread' }, h('h1', {}, 'Chats'), h('div', { class: 'row' }, refresh, h('a', { class: 'button primary', href: '#/new' }, 'New chat'))),
    pending,
    state,
    list,
  );

  function showPending() {
    const entries = pendingChats();
    put(pending, entries.length ? h('p', { class: 'notice' }, `${plural(entries.length, 'chat')} being set up. `, h('a', { href: '#/new' }, 'See progress')) : null);
  }

  function show(chats) {
    put(list, chats.map(chatItem));
    if (!chats.length) put(state, h('p', { class: 'empty' }, 'No chats yet. ', h('a', { href: '#/new' }, 'Start one.')));
  }

  let loading = null;
  let loadedOnce = false;
  async function load() {
    loading?.abort();
    loading = new AbortController();
    const signal = AbortSignal.any([ctx.signal, loading.signal]);
    refresh.disabled = true;
    try {
      const { chats } = await get('/admin/chats', { signal });
      loadedOnce = true;
      put(state);
      show(chats);
      list.removeAttribute('aria-busy');
      localStorage.setItem(CACHE, JSON.stringify(chats));
    } catch (error) {
      if (!isAbort(error)) put(state, errorBox(error, 'Could not load the chats'));
    } finally {
      if (!signal.aborted) refresh.disabled = false;
    }
  }

  // The list as this tab last saw it, at once, while the fresh one loads (the sidecar asks git and opencode).
  let cached = null;
  try {
    cached = JSON.parse(localStorage.getItem(CACHE) || 'null');
  } catch {
    cached = null;
  }
  if (Array.isArray(cached) && cached.length) {
    list.setAttribute('aria-busy', 'true');
    show(cached);
  } else {
    put(state, h('p', { class: 'muted' }, 'Loading chats…'));
  }

  const soon = throttle(load, 1500);
  const events = stream('/global/event', {
    onEvent: (event) => {
      if (/^(session\.(created|updated|deleted|status|idle|error)|(question|permission)\.(asked|replied|rejected))$/.test(event.type)) soon();
    },
    onOpen: () => loadedOnce && soon(),
  });
  ctx.onCleanup(() => {
    soon.cancel();
    events.close();
  });
  ctx.onCleanup(onChange((what) => (what === 'pending' ? showPending() : soon())));
  ctx.onCleanup(onPendingChange(showPending));
  ctx.onCleanup(onVisible(soon));
  const every = setInterval(() => document.visibilityState === 'visible' && soon(), 60000); // "5 min ago" moves on
  ctx.onCleanup(() => clearInterval(every));
  showPending();
  load();
}
