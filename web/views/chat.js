// One chat: the conversation streamed live from opencode (GET /event), tool calls and file edits shown
// compactly, a prompt box, abort, the changes git sees (chat-changes.js), push (pull request) and delete.
// On every (re)connect of the stream the messages are reloaded, then the stream's events are applied, so
// nothing missed while the phone slept is lost; events arriving during the reload wait for it.

import { announce, ApiError, del, get, jobFailure, pollJob, post, withQuery } from '../api.js';
import { usageDetail, usageOf, usageText } from '../cost.js';
import { stream } from '../events.js';
import { changesView, patchBlock } from './chat-changes.js';
import { chatInputs } from './chat-inputs.js';
import { agentPicker } from './agent-picker.js';
import { imageAttacher, imageThumb } from './image-attach.js';
import { markdown, preloadMarkdown } from '../markdown.js';
import { badge, confirmDialog, errorBox, h, isAbort, plural, put, throttle, when } from '../ui.js';

const byId = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const MAX_OUTPUT = 4000;

function clip(text, max = MAX_OUTPUT) {
  if (typeof text !== 'string') return '';
  return text.length > max ? `${text.slice(0, max)}\n… ${text.length - max} more characters` : text;
}

const STOPPED = 'MessageAbortedError'; // opencode's abort: the person stopped the agent, not a failure

/** An opencode error object ({name, data: {message}}) in words. */
export function errorText(error) {
  if (!error) return '';
  if (error.name === STOPPED) return 'Stopped.';
  const message = error.data?.message || error.message;
  const name = (error.name || 'Error').replace(/Error$/, ' error').replace(/([a-z])([A-Z])/g, '$1 $2');
  return message ? `${message}` : name;
}

/** How a reply ended early: stopped on request (a neutral note), or failed (an alert). */
function endNote(error) {
  if (!error) return null;
  return error.name === STOPPED ? h('p', { class: 'stopped-note' }, 'Stopped.') : errorBox(new Error(errorText(error)));
}

export function render(root, [sessionId], ctx) {
  const encoded = encodeURIComponent(sessionId);
  preloadMarkdown(); // while the conversation loads
  let session = null;
  let directory = null;
  let status = { type: 'idle' };
  let buffer = null;
  let reloadSeq = 0;
  let pending = null; // the prompt being sent, shown until opencode records it
  let chatState = null; // the sidecar's view (GET /admin/chats/{id}): interrupted (when, why), worktree gone
  const messages = new Map(); // id → {info, parts: Map}
  const openParts = new Set(); // <details> the reader opened, kept open across updates

  const title = h('h1', { class: 'chat-title' }, 'Chat');
  const meta = h('p', { class: 'item-meta' });
  const usageLine = h('p', { class: 'item-meta chat-usage' }); // tokens and cost so far, from the messages
  const statusSlot = h('span');
  const streamNote = h('p', { class: 'stream-note', 'aria-live': 'polite' });
  const notice = h('div', { 'aria-live': 'polite' });
  const stateNote = h('div', { class: 'chat-state', 'aria-live': 'polite' });
  const log = h('div', { class: 'messages', 'aria-label': 'Conversation' });
  const inputs = chatInputs(sessionId, ctx, () => renderStatus()); // questions and permission requests the agent waits on
  const changes = h('section', { class: 'changes', 'aria-label': 'Changes', hidden: true });
  const actionsOut = h('div', { 'aria-live': 'polite' });
  const abortButton = h('button', { type: 'button', class: 'button', disabled: true, onclick: abort }, 'Abort');
  const tabConversation = h('button', { type: 'button', class: 'tab', 'aria-pressed': 'true', onclick: () => showTab('conversation') }, 'Conversation');
  const tabChanges = h('button', { type: 'button', class: 'tab', 'aria-pressed': 'false', onclick: () => showTab('changes') }, 'Changes');
  const input = h('textarea', { id: 'prompt', rows: '2', placeholder: 'Message the agent', 'aria-label': 'Message the agent', enterkeyhint: 'send' });
  const sendButton = h('button', { type: 'submit', class: 'button primary', disabled: true }, 'Send');
  const promptError = h('div', { 'aria-live': 'assertive' });
  const picker = agentPicker('composer', ctx);
  const images = imageAttacher('composer-images', { maxBytes: picker.maxImageBytes, allowed: picker.takesImages });
  const promptForm = h('form', { class: 'prompt' }, promptError, images.node, h('div', { class: 'prompt-row' }, input, sendButton), h('div', { class: 'row' }, picker.node, images.button), picker.note);
  const moreMenu = h(
    'details',
    { class: 'menu' },
    h('summary', { class: 'button' }, 'More'),
    h(
      'div',
      { class: 'menu-body' },
      h('button', { type: 'button', class: 'button', onclick: push }, 'Push & open pull request'),
      h('button', { type: 'button', class: 'button danger', onclick: () => remove(false) }, 'Delete chat…'),
    ),
  );

  put(
    root,
    h('p', { class: 'back' }, h('a', { href: '#/chats' }, '← Chats')),
    h('header', { class: 'chat-head' }, title, meta, usageLine, h('div', { class: 'row' }, statusSlot, abortButton, moreMenu)),
    actionsOut,
    streamNote,
    h('div', { class: 'tabs', role: 'group', 'aria-label': 'View' }, tabConversation, tabChanges),
    notice,
    log,
    changes,
    inputs.node,
    stateNote,
    promptForm,
  );
  put(log, h('p', { class: 'muted' }, 'Loading the conversation…'));

  // ---- rendering

  const rel = (path) => (typeof path === 'string' && directory && path.startsWith(`${directory}/`) ? path.slice(directory.length + 1) : path);

  function toolSubject(tool, input, state) {
    const path = input.filePath || input.path || input.file;
    if (tool === 'bash') return input.description || input.command || state.title || '';
    if (path) return rel(path);
    return state.title || input.pattern || input.url || input.description || input.query || '';
  }

  function toolNode(part) {
    const state = part.state || {};
    const input = state.input || {};
    // A shell command that ran to its end but exited non-zero (or was killed: 137) failed, whatever opencode says.
    const exit = part.tool === 'bash' && state.status === 'completed' ? state.metadata?.exit : undefined;
    const exitFailed = typeof exit === 'number' && exit !== 0;
    const word = exitFailed ? `failed (exit ${exit})` : { pending: 'queued', running: 'running', completed: 'done', error: 'failed' }[state.status] || state.status || '';
    const kind = state.status === 'error' || exitFailed ? 'error' : state.status === 'completed' ? 'done' : 'busy';
    const filediff = state.metadata?.filediff;
    const counts = filediff && (filediff.additions || filediff.deletions) ? h('span', { class: 'counts' }, h('span', { class: 'add' }, `+${filediff.additions || 0}`), ' ', h('span', { class: 'del' }, `−${filediff.deletions || 0}`)) : null;
    const body = [];
    if (part.tool === 'bash' && input.command) body.push(h('pre', { class: 'code' }, `$ ${input.command}`));
    if (typeof state.metadata?.diff === 'string' && state.metadata.diff) body.push(patchBlock(state.metadata.diff));
    else if (part.tool === 'write' && typeof input.content === 'string') body.push(h('pre', { class: 'code' }, clip(input.content)));
    if (state.status !== 'error' && typeof state.output === 'string' && state.output.trim() && !['edit', 'write'].includes(part.tool)) {
      body.push(h('pre', { class: 'code output' }, clip(state.output)));
    }
    if (state.error) body.push(errorBox(new Error(state.error)));
    const details = h(
      'details',
      { class: `tool tool-${kind}`, 'data-part': part.id, open: openParts.has(part.id) },
      h('summary', {}, h('span', { class: 'tool-name' }, part.tool), ' ', h('span', { class: 'tool-subject' }, toolSubject(part.tool, input, state)), ' ', counts, ' ', badge(word, kind)),
      body.length ? body : h('p', { class: 'muted' }, state.status === 'completed' ? 'No output.' : 'Waiting…'),
    );
    details.addEventListener('toggle', () => (details.open ? openParts.add(part.id) : openParts.delete(part.id)));
    return details;
  }

  function partNode(part, role) {
    switch (part.type) {
      case 'text':
        if (part.synthetic || part.ignored || !part.text) return null;
        return h('div', { class: 'part part-text', 'data-part': part.id }, role === 'user' ? h('div', { class: 'text' }, part.text) : markdown(part.text));
      case 'reasoning': {
        if (!part.text?.trim()) return null;
        const details = h('details', { class: 'reasoning', 'data-part': part.id, open: openParts.has(part.id) }, h('summary', {}, 'Thinking'), h('div', { class: 'text' }, part.text));
        details.addEventListener('toggle', () => (details.open ? openParts.add(part.id) : openParts.delete(part.id)));
        return details;
      }
      case 'tool':
        return toolNode(part);
      case 'file':
        return imageThumb(part) || h('p', { class: 'part chip' }, `File: ${part.filename || rel(part.source?.path) || part.mime}`);
      case 'patch':
        return part.files?.length ? h('p', { class: 'part chip' }, `Changed ${plural(part.files.length, 'file')}: ${part.files.map(rel).join(', ')}`) : null;
      case 'retry':
        return h('p', { class: 'part chip warn' }, `Retry ${part.attempt ?? ''}: ${errorText(part.error)}`);
      case 'agent':
        return h('p', { class: 'part chip' }, `Agent @${part.name}`);
      case 'subtask':
        return h('p', { class: 'part chip' }, `Subtask: ${part.description || part.prompt || ''}`);
      case 'compaction':
        return h('p', { class: 'part chip' }, 'The conversation was compacted.');
      default:
        return null; // step-start, step-finish, snapshot: bookkeeping
    }
  }

  function messageNode(message) {
    const role = message.info.role || 'assistant';
    const parts = [...message.parts.values()].sort((a, b) => byId(a.id, b.id)).map((part) => partNode(part, role)).filter(Boolean);
    const error = role === 'assistant' ? endNote(message.info.error) : null;
    const working = role === 'assistant' && !message.info.time?.completed && !error && status.type !== 'idle';
    return h(
      'article',
      { class: `msg msg-${role}`, 'data-message': message.info.id, hidden: !parts.length && !error && !working },
      h('h2', { class: 'visually-hidden' }, role === 'user' ? 'You' : 'Agent'),
      parts,
      working && !parts.length ? h('p', { class: 'muted' }, 'Working…') : null,
      error,
      message.info.time?.created ? h('p', { class: 'msg-time' }, when(message.info.time.created)) : null,
    );
  }

  // Rendering is incremental: only the messages an event touched are rebuilt (at most once a frame), so a long
  // conversation stays cheap to stream into on a phone.
  const nodes = new Map(); // message id → its <article>
  const dirty = new Set(); // message ids to rebuild
  let frame = null;
  function scheduleRender(messageID) {
    if (messageID === undefined) nodes.clear(); // everything
    else dirty.add(messageID);
    if (frame === null) frame = requestAnimationFrame(renderMessages);
  }

  function renderMessages() {
    frame = null;
    const atBottom = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
    const sorted = [...messages.values()].sort((a, b) => byId(a.info.id, b.info.id));
    if (pending && sorted.some((m) => m.info.role === 'user' && m.info.id > pending.after && m.parts.size)) pending = null;
    for (const [id, node] of nodes) {
      if (!messages.has(id)) {
        node.remove();
        nodes.delete(id);
      }
    }
    let previous = null;
    for (const message of sorted) {
      const id = message.info.id;
      let node = nodes.get(id);
      if (!node || dirty.has(id)) {
        const fresh = messageNode(message);
        if (node?.parentNode === log) node.replaceWith(fresh);
        node = fresh;
        nodes.set(id, node);
      }
      const expected = previous ? previous.nextSibling : log.firstChild;
      if (node !== expected) log.insertBefore(node, expected);
      previous = node;
    }
    dirty.clear();
    const usage = usageOf(messages.values());
    usageLine.textContent = usageText(usage);
    usageLine.title = usageDetail(usage);
    usageLine.hidden = !usageLine.textContent;
    // Whatever follows the messages (a loading note, the empty note, the prompt being sent) is redrawn.
    while (previous ? previous.nextSibling : log.firstChild) (previous ? previous.nextSibling : log.firstChild).remove();
    if (pending) {
      log.append(h('article', { class: 'msg msg-user pending', 'aria-label': 'Sending' }, h('div', { class: 'text' }, pending.text), h('p', { class: 'msg-time' }, 'sending…')));
    } else if (!sorted.length) {
      log.append(h('p', { class: 'empty' }, 'No messages yet. Send the agent a task below.'));
    }
    if (atBottom) window.scrollTo({ top: document.documentElement.scrollHeight });
  }

  function renderStatus() {
    const type = status.type || 'idle';
    if (type !== 'idle' && inputs.waiting()) put(statusSlot, badge('needs your input', 'warn')); // busy, but on the person
    else put(statusSlot, badge(type === 'retry' ? 'error · retrying' : type === 'busy' ? 'working' : type, type === 'retry' ? 'error' : type));
    abortButton.disabled = type === 'idle';
    if (type === 'idle') changesSoon(); // a turn ended (or the stream came back): what it changed shows
    if (type === 'retry') {
      put(notice, h('p', { class: 'warning' }, `The agent hit an error and is retrying (attempt ${status.attempt}): ${status.message}`, status.next ? [' Next try ', when(status.next), '.'] : ''));
    } else if (!notice.querySelector('[data-keep]')) {
      put(notice);
    }
  }

  /** What the conversation alone does not say: the turn was interrupted (Continue), or the worktree is gone. */
  function renderState() {
    const s = chatState;
    if (s?.has_session && !s.has_worktree) {
      promptForm.hidden = true;
      put(
        stateNote,
        h(
          'div',
          { class: 'warning', role: 'status' },
          h('p', {}, `This chat's worktree was removed${s.branch ? ` (its branch ${s.branch} is kept)` : ''}, so the agent has nowhere to work. Make it again to go on, or delete the chat.`),
          h('div', { class: 'row' }, h('button', { type: 'button', class: 'button primary', onclick: restoreWorktree }, 'Make the worktree again'), h('button', { type: 'button', class: 'button danger', onclick: () => remove(false) }, 'Delete chat…')),
        ),
      );
    } else if (s?.status === 'interrupted' && s.interruption) {
      put(
        stateNote,
        h(
          'div',
          { class: 'warning', role: 'status' },
          h('p', {}, 'Interrupted: ', s.interruption.why, s.interruption.at ? [' (', when(s.interruption.at), ')'] : '', '. The agent did not finish this turn.'),
          h('button', { type: 'button', class: 'button primary', onclick: continueTurn }, 'Continue'),
        ),
      );
    } else {
      put(stateNote);
    }
  }

  async function loadState() {
    try {
      chatState = await get(`/admin/chats/${encoded}`, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error)) return;
      chatState = null; // the conversation shows all the same; this is only a note beside it
    }
    renderState();
  }
  const stateSoon = throttle(loadState, 1500);
  ctx.onCleanup(() => stateSoon.cancel());

  // The Changes tab reads git (chat-changes.js) when it is opened, and again when a turn ends while it is open.
  const setCount = (n) => (tabChanges.textContent = n ? `Changes (${n})` : 'Changes');
  const changeList = changesView(changes, sessionId, { signal: ctx.signal, onCount: setCount });
  const changesSoon = throttle(() => !changes.hidden && changeList.load(), 1000);
  ctx.onCleanup(() => changesSoon.cancel());

  function renderHead() {
    if (!session) return;
    title.textContent = session.title || 'Untitled chat';
    document.title = `${session.title || 'Chat'} · mecodes`;
    const info = session.metadata?.mecodes || {};
    put(meta, [info.repo, info.branch].filter(Boolean).join(' · ') || rel(session.directory) || session.directory, ' · ', when(session.time?.updated));
  }

  function showTab(which) {
    const conversation = which === 'conversation';
    tabConversation.setAttribute('aria-pressed', String(conversation));
    tabChanges.setAttribute('aria-pressed', String(!conversation));
    log.hidden = !conversation;
    changes.hidden = conversation;
    if (!conversation) changeList.load();
  }

  // ---- state from the server

  const messageUrl = () => withQuery(`/session/${encoded}/message`, { directory });

  async function reload() {
    const seq = ++reloadSeq;
    inputs.load(directory);
    buffer ??= [];
    log.setAttribute('aria-busy', 'true');
    try {
      const [list, statuses] = await Promise.all([
        get(messageUrl(), { signal: ctx.signal }),
        get(withQuery('/session/status', { directory }), { signal: ctx.signal }),
      ]);
      if (seq !== reloadSeq) return;
      messages.clear();
      for (const { info, parts } of list) messages.set(info.id, { info, parts: new Map(parts.map((p) => [p.id, p])) });
      const lastUser = list.filter((m) => m.info.role === 'user').pop()?.info; // the chat's model and agent so far
      if (lastUser?.model) picker.follow({ model: `${lastUser.model.providerID}/${lastUser.model.modelID}`, agent: lastUser.agent });
      status = statuses?.[sessionId] || { type: 'idle' };
      // The snapshot is the truth; what happened meanwhile follows (text deltas are dropped: opencode sends the
      // whole part again when it ends, and applying one twice would double the text).
      const queued = buffer || [];
      buffer = null;
      for (const event of queued) if (event.type !== 'message.part.delta') apply(event);
      renderStatus();
      scheduleRender();
      log.removeAttribute('aria-busy');
    } catch (error) {
      if (isAbort(error) || seq !== reloadSeq) return;
      const queued = buffer || [];
      buffer = null;
      queued.forEach(apply);
      log.removeAttribute('aria-busy');
      put(notice, h('div', { 'data-keep': '' }, errorBox(error, 'Could not load the conversation'), h('button', { type: 'button', class: 'button', onclick: () => { put(notice); reload(); } }, 'Try again')));
    }
  }

  function messageEntry(messageID) {
    if (!messages.has(messageID)) messages.set(messageID, { info: { id: messageID, role: 'assistant', time: {} }, parts: new Map() });
    return messages.get(messageID);
  }

  function apply(event) {
    const props = event.properties || {};
    if (props.sessionID && props.sessionID !== sessionId) return;
    switch (event.type) {
      case 'message.updated':
        messageEntry(props.info.id).info = props.info;
        scheduleRender(props.info.id);
        return;
      case 'message.removed':
        messages.delete(props.messageID);
        scheduleRender(props.messageID);
        return;
      case 'message.part.updated':
        messageEntry(props.part.messageID).parts.set(props.part.id, props.part);
        scheduleRender(props.part.messageID);
        return;
      case 'message.part.delta': {
        const parts = messageEntry(props.messageID).parts;
        const part = parts.get(props.partID) || { id: props.partID, messageID: props.messageID, type: 'text', text: '' };
        part[props.field] = (part[props.field] || '') + props.delta;
        parts.set(part.id, part);
        scheduleRender(props.messageID);
        return;
      }
      case 'message.part.removed':
        messages.get(props.messageID)?.parts.delete(props.partID);
        scheduleRender(props.messageID);
        return;
      case 'session.status':
      case 'session.idle':
        status = event.type === 'session.idle' ? { type: 'idle' } : props.status || { type: 'idle' };
        renderStatus();
        stateSoon();
        // "Working…" on an unfinished reply depends on the status.
        for (const m of messages.values()) if (m.info.role === 'assistant' && !m.info.time?.completed) scheduleRender(m.info.id);
        return;
      case 'session.updated':
        session = props.info || session;
        renderHead();
        return;
      case 'session.deleted':
        put(notice, h('p', { class: 'warning', 'data-keep': '' }, 'This chat was deleted (in another tab, or by garbage collection). ', h('a', { href: '#/chats' }, 'Back to the chats')));
        promptForm.hidden = true;
        return;
      case 'session.error':
        // A stop the person asked for is no error: the reply's own note says "Stopped."
        if (props.error && props.error.name !== STOPPED) put(notice, h('div', { 'data-keep': '' }, errorBox(new Error(errorText(props.error)), 'The agent stopped with an error')));
        return;
      default:
        return;
    }
  }

  function onEvent(event) {
    inputs.onEvent(event);
    if (!event.properties || (event.properties.sessionID && event.properties.sessionID !== sessionId)) return;
    if (buffer) buffer.push(event);
    else apply(event);
  }

  // ---- actions

  async function send(event) {
    event?.preventDefault();
    const text = input.value;
    if (!text.trim() || !directory) return;
    put(promptError);
    sendButton.disabled = true;
    const body = { text, ...picker.choice() };
    if (images.images().length) body.attachments = images.images();
    const after = [...messages.keys()].sort(byId).pop() || '';
    try {
      await post(`/admin/chats/${encoded}/prompt`, body, { signal: ctx.signal });
      input.value = '';
      images.clear();
      fitComposer();
      pending = { text, after };
      scheduleRender('pending'); // no message changed: only the bubble being sent is drawn
      if (connection !== 'live') reload();
    } catch (error) {
      if (!isAbort(error)) put(promptError, errorBox(error, 'Not sent'));
    } finally {
      sendButton.disabled = false;
    }
  }

  /** The composer grows with its text up to a quarter of the screen (then scrolls), and shrinks back when emptied. */
  function fitComposer() {
    input.style.height = '';
    const borders = input.offsetHeight - input.clientHeight;
    if (input.value) input.style.height = `${Math.min(input.scrollHeight + borders, window.innerHeight * 0.25)}px`;
  }

  async function abort() {
    abortButton.disabled = true;
    try {
      await post(withQuery(`/session/${encoded}/abort`, { directory }), {}, { signal: ctx.signal });
      put(actionsOut, h('p', { class: 'notice' }, 'Asked the agent to stop.'));
    } catch (error) {
      if (!isAbort(error)) put(actionsOut, errorBox(error, 'Could not abort'));
      abortButton.disabled = false;
    }
  }

  async function continueTurn(event) {
    event.currentTarget.disabled = true;
    try {
      await post(`/admin/chats/${encoded}/continue`, {}, { signal: ctx.signal });
      put(stateNote, h('p', { class: 'notice', role: 'status' }, 'Asked the agent to keep going.'));
      if (connection !== 'live') reload();
    } catch (error) {
      if (!isAbort(error)) put(stateNote, errorBox(error, 'Could not continue'));
    }
  }

  async function restoreWorktree() {
    try {
      const done = await runJob(() => post(`/admin/chats/${encoded}/worktree`, {}, { signal: ctx.signal }), 'Making the worktree again');
      if (done.status !== 'finished') throw new ApiError(jobFailure(done));
      put(actionsOut, h('p', { class: 'notice' }, `The worktree is back, on branch ${done.result?.branch}.`));
      promptForm.hidden = false;
      loadState();
    } catch (error) {
      if (!isAbort(error)) put(actionsOut, errorBox(error, 'The worktree was not made again'));
    }
  }

  async function runJob(start, label) {
    moreMenu.open = false;
    put(actionsOut, h('p', { class: 'muted' }, `${label}…`));
    const job = await start();
    return pollJob(job, (j) => put(actionsOut, h('p', { class: 'muted' }, `${label}: ${j.progress?.step || j.status}…`)), ctx.signal);
  }

  async function push() {
    try {
      const done = await runJob(() => post(`/admin/chats/${encoded}/push`, {}, { signal: ctx.signal }), 'Pushing');
      if (done.status !== 'finished') throw new ApiError(jobFailure(done));
      const result = done.result || {};
      put(actionsOut, h('p', { class: 'notice' }, `Pushed ${result.branch}. `, result.pr_url ? h('a', { href: result.pr_url, target: '_blank', rel: 'noopener' }, `Pull request #${result.pr_number}`) : 'No pull request link came back.'));
    } catch (error) {
      if (!isAbort(error)) put(actionsOut, errorBox(error, 'Not pushed'));
    }
  }

  async function remove(force) {
    moreMenu.open = false;
    const ok = await confirmDialog(
      force
        ? { title: 'Delete the chat and its work?', message: 'The worktree is removed with its uncommitted changes and unpushed commits. This cannot be undone.', confirm: 'Delete with its work', danger: true }
        : { title: 'Delete this chat?', message: 'The agent is stopped, the worktree removed (its branch is kept) and the session deleted.', confirm: 'Delete', danger: true },
    );
    if (!ok) return;
    try {
      const done = await runJob(() => del(withQuery(`/admin/chats/${encoded}`, { force: force ? 'true' : undefined }), { signal: ctx.signal }), 'Deleting');
      if (done.status !== 'finished') throw new ApiError(jobFailure(done));
      announce('chats');
      location.hash = '#/chats';
    } catch (error) {
      if (isAbort(error)) return;
      put(
        actionsOut,
        errorBox(error, 'Not deleted'),
        error.status === 409 ? h('button', { type: 'button', class: 'button danger', onclick: () => remove(true) }, 'Delete anyway, losing the work…') : null,
      );
    }
  }

  // The More menu closes on Escape and on a click elsewhere, as menus do.
  const closeMenu = (event) => {
    if (moreMenu.open && (event.type === 'keydown' ? event.key === 'Escape' : !moreMenu.contains(event.target))) {
      moreMenu.open = false;
      if (event.type === 'keydown') moreMenu.querySelector('summary').focus();
    }
  };
  document.addEventListener('click', closeMenu);
  document.addEventListener('keydown', closeMenu);
  ctx.onCleanup(() => {
    document.removeEventListener('click', closeMenu);
    document.removeEventListener('keydown', closeMenu);
  });

  promptForm.addEventListener('submit', send);
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) send(event);
  });
  input.addEventListener('input', fitComposer);

  // ---- start: the session (for its directory), then the stream; every connect reloads the messages

  let connection = 'connecting';
  (async () => {
    try {
      session = await get(`/session/${encoded}`, { signal: ctx.signal });
    } catch (error) {
      if (isAbort(error)) return;
      put(log, error.status === 404 ? h('p', { class: 'error', role: 'alert' }, 'There is no chat with this id; it may have been deleted. ', h('a', { href: '#/chats' }, 'See the chats.')) : errorBox(error, 'Could not open the chat'));
      promptForm.hidden = true;
      return;
    }
    directory = session.directory;
    sendButton.disabled = false;
    renderHead();
    renderStatus();
    const events = stream(withQuery('/event', { directory }), {
      onEvent,
      onOpen: () => {
        reload();
        stateSoon();
      },
      onState: (state) => {
        connection = state;
        put(streamNote, state === 'reconnecting' ? 'Reconnecting to the live stream…' : '');
      },
    });
    ctx.onCleanup(() => events.close());
    reload();
    loadState();
  })();
  ctx.onCleanup(() => frame !== null && cancelAnimationFrame(frame));
}
