// New chat: pick a repo (the user's GitHub repos, or owner/name typed by hand), an optional branch, the task;
// then follow the chat job's phases until the chat opens. Jobs are remembered, so leaving and coming back
// (or another tab) shows where they stand.

import { announce, del, forgetChat, get, jobFailure, onChange, onPendingChange, pendingChats, pollJob, post, rememberChat, withQuery } from '../api.js';
import { ago, badge, busy, debounce, errorBox, h, isAbort, progressBar, put } from '../ui.js';
import { agentPicker } from './agent-picker.js';
import { imageAttacher } from './image-attach.js';

const PHASES = ['repo', 'worktree', 'session', 'prompt'];
const PHASE_LABELS = { repo: 'Repo', worktree: 'Worktree', session: 'Session', prompt: 'Task sent' };
const REPO = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/;

/** "https://github.com/o/n.git", "git@github.com:o/n" or " o/n " → "o/n". */
export function repoName(text) {
  let value = text.trim().replace(/^(https?:\/\/[^/]+\/|git@[^:]+:)/, '').replace(/\/+$/, '');
  if (value.endsWith('.git')) value = value.slice(0, -4);
  return value;
}

/** Where a chat job stands: the phase index and a fraction for the bar. */
export function chatProgress(job) {
  if (job.status === 'finished') return { phase: PHASES.length, fraction: 1 };
  const step = job.progress?.step || '';
  let phase = PHASES.findIndex((name) => step.startsWith(name));
  if (phase < 0) phase = 0; // waiting for the lock, cloning, fetching: all part of the repo phase
  if (job.status === 'queued' || job.status === 'deferred') return { phase: 0, fraction: 0 };
  const starts = [0.02, 0.6, 0.8, 0.9, 1];
  let fraction = starts[phase];
  const percent = job.progress?.percent;
  if (phase === 0 && typeof percent === 'number' && /clon|fetch/.test(step)) fraction = 0.05 + 0.55 * (percent / 100);
  return { phase, fraction };
}

function stepText(job) {
  if (job.status === 'queued' || job.status === 'deferred') return 'Waiting for a worker…';
  const progress = job.progress || {};
  const gitPart = progress.phase ? ` — ${progress.phase}${typeof progress.percent === 'number' ? ` ${progress.percent}%` : ''}` : '';
  return progress.step ? `${progress.step}${gitPart}` : 'Starting…';
}

export function render(root, _params, ctx) {
  const repoInput = h('input', {
    id: 'repo', name: 'repo', type: 'text', required: true, placeholder: 'owner/name', autocomplete: 'off',
    autocapitalize: 'off', spellcheck: 'false', inputmode: 'url', 'aria-describedby': 'repo-help', enterkeyhint: 'next',
  });
  const branchInput = h('input', {
    id: 'branch', name: 'branch', type: 'text', placeholder: 'default: a new branch', autocomplete: 'off',
    autocapitalize: 'off', spellcheck: 'false',
  });
  const promptInput = h('textarea', { id: 'prompt', name: 'prompt', rows: '6', placeholder: 'What should the agent do?' });
  const picker = agentPicker('new', ctx);
  const images = imageAttacher('new-images', { maxBytes: picker.maxImageBytes, allowed: picker.takesImages });
  const suggestions = h('ul', { class: 'picker', 'aria-label': 'Your GitHub repositories' });
  const pickerNote = h('div', { class: 'picker-note', 'aria-live': 'polite' });
  const formError = h('div', { 'aria-live': 'assertive' });
  const submit = h('button', { type: 'submit', class: 'button primary wide' }, 'Start chat');
  const pendingList = h('div', { class: 'stack' });
  const pendingSection = h('section', { 'aria-labelledby': 'pending-title', hidden: true }, h('h2', { id: 'pending-title' }, 'Being set up'), pendingList);
  const startedHere = new Set();

  const form = h(
    'form',
    { class: 'form', novalidate: true },
    h('label', { for: 'repo' }, 'Repository'),
    repoInput,
    h('p', { id: 'repo-help', class: 'hint' }, 'Pick one of your GitHub repositories, or type owner/name.'),
    pickerNote,
    suggestions,
    h('label', { for: 'branch' }, 'Branch ', h('span', { class: 'muted' }, '(optional)')),
    branchInput,
    h('label', { for: 'prompt' }, 'Task'),
    promptInput,
    images.node,
    h('div', { class: 'row' }, picker.node, images.button),
    picker.note,
    h('p', { class: 'hint' }, 'Ctrl+Enter starts the chat.'),
    formError,
    submit,
  );
  put(root, h('h1', {}, 'New chat'), form, pendingSection);

  // ---- the repo picker

  let listing = null;
  async function loadRepos(refresh = false) {
    listing?.abort();
    listing = new AbortController();
    const signal = AbortSignal.any([ctx.signal, listing.signal]);
    const q = repoName(repoInput.value);
    put(pickerNote, h('span', { class: 'muted' }, 'Loading your repositories…'));
    try {
      const page = await get(withQuery('/admin/github/repos', { q, refresh: refresh ? 'true' : undefined }), { signal });
      put(suggestions, page.repos.slice(0, 8).map(suggestion));
      put(
        pickerNote,
        page.total === 0 ? h('span', { class: 'muted' }, q ? `None of your repositories matches “${q}”; owner/name works too.` : 'No repositories found for the token.') : null,
        page.total > 8 ? h('span', { class: 'muted' }, `${page.total} match; type to narrow down. `) : null,
        h('button', { type: 'button', class: 'link', onclick: () => loadRepos(true) }, 'Refresh list'),
      );
    } catch (error) {
      if (isAbort(error)) return;
      put(suggestions);
      put(pickerNote, h('p', { class: 'warning', role: 'status' }, `Could not list your GitHub repositories: ${error.message} You can still type owner/name.`));
    }
  }

  function suggestion(repo) {
    return h(
      'li',
      {},
      h(
        'button',
        {
          type: 'button', class: 'suggestion', 'aria-pressed': String(repoName(repoInput.value) === repo.full_name),
          onclick: () => {
            repoInput.value = repo.full_name;
            put(suggestions, suggestion(repo));
            promptInput.focus();
          },
        },
        h('span', { class: 'name' }, repo.full_name),
        h('span', { class: 'meta' }, repo.private ? badge('private', 'muted') : null, repo.cached ? badge('cached here', 'idle') : null, repo.pushed_at ? ` pushed ${ago(repo.pushed_at)}` : ''),
      ),
    );
  }

  const search = debounce(() => loadRepos(), 250);
  repoInput.addEventListener('input', search);
  ctx.onCleanup(() => search.cancel());
  loadRepos();

  // ---- starting a chat

  form.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    put(formError);
    const repo = repoName(repoInput.value);
    if (!REPO.test(repo)) {
      put(formError, errorBox(new Error('Type the repository as owner/name, for example octocat/hello-world.')));
      repoInput.focus();
      return;
    }
    const body = { repo };
    if (branchInput.value.trim()) body.branch = branchInput.value.trim();
    if (promptInput.value.trim()) body.prompt = promptInput.value;
    Object.assign(body, picker.choice());
    if (images.images().length) body.attachments = images.images();
    submit.disabled = true;
    try {
      const job = await post('/admin/chats', body, { signal: ctx.signal });
      const firstLine = (body.prompt || '').trim().split('\n')[0].slice(0, 120);
      startedHere.add(job.id);
      rememberChat({ id: job.id, url: job.url, repo, task: firstLine, started: Date.now() });
      promptInput.value = '';
      images.clear();
      showPending();
    } catch (error) {
      if (!isAbort(error)) put(formError, errorBox(error, 'The chat could not be started'));
    } finally {
      submit.disabled = false;
    }
  });

  // ---- chats being set up (from any tab, any earlier visit)

  const cards = new Map();
  function showPending() {
    const entries = pendingChats();
    pendingSection.hidden = entries.length === 0;
    for (const [id, card] of cards) {
      if (!entries.some((e) => e.id === id)) {
        card.stop();
        card.el.remove();
        cards.delete(id);
      }
    }
    for (const entry of entries) {
      if (!cards.has(entry.id)) {
        const card = pendingCard(entry);
        cards.set(entry.id, card);
        pendingList.append(card.el);
      }
    }
  }

  function pendingCard(entry) {
    const controller = new AbortController();
    const signal = AbortSignal.any([ctx.signal, controller.signal]);
    const phases = h('ol', { class: 'phases' }, PHASES.map((name) => h('li', { 'data-phase': name }, PHASE_LABELS[name])));
    const barSlot = h('div');
    const status = h('p', { class: 'step', 'aria-live': 'polite' }, 'Checking…');
    const actions = h('div', { class: 'row' });
    const el = h(
      'article',
      { class: 'card job-card', 'data-job': entry.id },
      h('h3', {}, entry.repo),
      entry.task ? h('p', { class: 'muted clip' }, entry.task) : null,
      phases,
      barSlot,
      status,
      actions,
    );
    const dismiss = () => forgetChat(entry.id);
    // Cancel: DELETE /admin/jobs/{id}. A waiting job is cancelled at once; a running one stops at its next step
    // and takes back what it made, which the polling below then shows.
    let cancelAsked = false;
    const cancelButton = h('button', { type: 'button', class: 'button', onclick: () => cancel() }, 'Cancel');
    const cancelError = h('div', { 'aria-live': 'assertive' });
    async function cancel() {
      cancelAsked = true;
      put(cancelError);
      put(status, 'Cancelling…');
      await busy(cancelButton, async () => show(await del(`/admin/jobs/${entry.id}`, { signal })), (error) => {
        cancelAsked = false;
        put(cancelError, errorBox(error, 'Could not cancel'));
      });
    }

    function show(job) {
      if (job.status === 'canceled') {
        phases.hidden = true;
        put(barSlot);
        put(status, 'Cancelled');
        put(actions, h('button', { type: 'button', class: 'button', onclick: dismiss }, 'Dismiss'));
        return;
      }
      const { phase, fraction } = chatProgress(job);
      phases.querySelectorAll('li').forEach((li, i) => {
        li.className = i < phase ? 'done' : i === phase && job.status !== 'failed' ? 'current' : job.status === 'failed' && i === phase ? 'failed' : '';
        if (i === phase && job.status !== 'finished') li.setAttribute('aria-current', 'step');
        else li.removeAttribute('aria-current');
      });
      put(barSlot, progressBar(fraction, `Setting up the chat for ${entry.repo}`));
      if (job.status === 'finished') {
        const url = job.result?.url || `#/chat/${job.result?.session_id}`;
        put(status, 'Ready. ', badge('ready', 'idle'));
        put(actions, h('a', { class: 'button primary', href: url, onclick: dismiss }, 'Open chat'), h('button', { type: 'button', class: 'button', onclick: dismiss }, 'Dismiss'));
      } else if (job.status === 'failed' || job.status === 'stopped') {
        put(status, errorBox(new Error(jobFailure(job)), 'The chat could not be set up'));
        put(actions, h('button', { type: 'button', class: 'button', onclick: dismiss }, 'Dismiss'));
      } else {
        put(status, cancelAsked ? 'Cancelling…' : stepText(job));
        put(actions, ...(cancelAsked ? [] : [cancelButton, cancelError]));
      }
    }

    (async () => {
      try {
        const done = await pollJob({ id: entry.id, url: entry.url, status: 'queued' }, show, signal);
        if (done.status === 'finished') {
          announce('chats');
          // Open the chat that was started from this page, if the page is still on screen.
          if (startedHere.has(entry.id) && !signal.aborted && done.result?.session_id) {
            forgetChat(entry.id);
            location.hash = `#/chat/${done.result.session_id}`;
          }
        }
      } catch (error) {
        if (isAbort(error)) return;
        const gone = error.status === 404 ? new Error('The server no longer knows this job (it expired).') : error;
        put(status, errorBox(gone, 'Could not follow the setup'));
        put(actions, h('button', { type: 'button', class: 'button', onclick: dismiss }, 'Dismiss'));
      }
    })();
    return { el, stop: () => controller.abort() };
  }

  showPending();
  ctx.onCleanup(onPendingChange(showPending));
  ctx.onCleanup(onChange((what) => what === 'pending' && showPending()));
  ctx.onCleanup(() => cards.forEach((card) => card.stop()));
}
