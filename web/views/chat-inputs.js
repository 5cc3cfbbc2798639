// What the agent waits on the person for, in a chat: a question it asked (opencode's question tool: a header, the
// question, single or multiple choice, and an answer of one's own unless the question rules it out) and a
// permission it asks for (a command, a file, a pattern), each answered here. Loaded with the conversation (so a
// reload or a second device shows them) and kept live by opencode's events: answered on one device, a request
// disappears on the others. Requests of the chat's sub-agents (sessions started by its task tool) count as its own.

import { get, post, withQuery } from '../api.js';
import { errorBox, h, isAbort, put } from '../ui.js';

const MAX_SHOWN = 4000;
const PERMISSION_WORDS = {
  bash: 'The agent asks to run a command',
  edit: 'The agent asks to change a file',
  write: 'The agent asks to write a file',
  read: 'The agent asks to read a file',
  external_directory: 'The agent asks to work outside its worktree',
  webfetch: 'The agent asks to fetch a web page',
  task: 'The agent asks to start a sub-agent',
  doom_loop: 'The agent keeps repeating the same step and asks whether to go on',
};

const clip = (text) => (text.length > MAX_SHOWN ? `${text.slice(0, MAX_SHOWN)}\n… ${text.length - MAX_SHOWN} more characters` : text);

/** chatInputs(sessionId, ctx, onWaiting) → {node, load(directory), onEvent(event), waiting()}: `node` goes below
 * the conversation; `load` on every (re)connect of the event stream, `onEvent` for each of its events (unfiltered);
 * `onWaiting()` is called whenever what is pending changes, and `waiting()` says whether anything is. */
export function chatInputs(sessionId, ctx, onWaiting = () => {}) {
  const node = h('section', { class: 'asks', 'aria-label': 'The agent asks you', hidden: true });
  const note = h('div', { 'aria-live': 'polite' });
  const list = h('div', { 'aria-live': 'polite' });
  node.append(note, list);
  const family = new Set([sessionId]); // this chat's session and its sub-agents'
  const pending = new Map(); // request id → {kind: 'question' | 'permission', request}
  const cards = new Map(); // request id → its card, kept while pending so a half-made choice survives a redraw
  const gone = new Set(); // requests answered or withdrawn: a snapshot loaded meanwhile must not bring them back
  let directory = null;
  let arrived = null; // while a snapshot loads: the requests asked meanwhile (the snapshot may predate them)
  let seq = 0;

  const rel = (path) => (typeof path === 'string' && directory && path.startsWith(`${directory}/`) ? path.slice(directory.length + 1) : path);

  function add(kind, request) {
    if (!request?.id || !family.has(request.sessionID) || gone.has(request.id)) return;
    pending.set(request.id, { kind, request });
    arrived?.set(request.id, { kind, request });
  }

  function resolve(requestID) {
    gone.add(requestID);
    pending.delete(requestID);
    arrived?.delete(requestID);
  }

  async function load(dir) {
    directory = dir;
    if (!directory) return;
    const mine = ++seq;
    arrived = new Map();
    const opts = { signal: ctx.signal };
    try {
      const [questions, permissions, children] = await Promise.all([
        get(withQuery('/question', { directory }), opts),
        get(withQuery('/permission', { directory }), opts),
        get(withQuery(`/session/${encodeURIComponent(sessionId)}/children`, { directory }), opts).catch((error) => {
          if (isAbort(error)) throw error;
          return []; // without the sub-agents, the chat's own requests still show
        }),
      ]);
      for (const child of children || []) family.add(child.id);
      const listed = [...(questions || []).map((r) => ['question', r]), ...(permissions || []).map((r) => ['permission', r])].filter(([, r]) => family.has(r.sessionID));
      const asked = await Promise.all(listed.map(([, r]) => stillAsked(r)));
      if (mine !== seq) return;
      const meanwhile = arrived;
      arrived = null;
      pending.clear();
      listed.forEach(([kind, request], i) => asked[i] && add(kind, request));
      for (const [id, entry] of meanwhile) if (!gone.has(id)) pending.set(id, entry);
      put(note);
      render();
    } catch (error) {
      if (mine !== seq || isAbort(error)) return;
      arrived = null;
      node.hidden = false;
      put(note, errorBox(error, 'Could not load what the agent asks you'));
    }
  }

  /** Whether the tool step that made the request still runs: opencode keeps listing an aborted turn's requests. */
  async function stillAsked(request) {
    const tool = request.tool;
    if (!tool?.messageID) return true;
    const path = `/session/${encodeURIComponent(request.sessionID)}/message/${encodeURIComponent(tool.messageID)}`;
    try {
      const step = (await get(withQuery(path, { directory }), { signal: ctx.signal }))?.parts?.find((p) => p.callID === tool.callID);
      return !step || ['pending', 'running'].includes(step.state?.status);
    } catch (error) {
      if (isAbort(error)) throw error;
      return true; // shown rather than hidden: a request the person cannot see would leave the agent waiting
    }
  }

  function onEvent(event) {
    const props = event.properties || {};
    switch (event.type) {
      case 'question.asked':
        add('question', props);
        break;
      case 'permission.asked':
        add('permission', props);
        break;
      case 'question.replied':
      case 'question.rejected':
      case 'permission.replied':
        resolve(props.requestID);
        break;
      case 'session.idle':
      case 'session.status':
        // Only a busy session waits: once the chat is idle (its turn aborted, say), nothing it asked is pending.
        if (props.sessionID !== sessionId || (event.type === 'session.status' && props.status?.type !== 'idle')) return;
        [...pending.keys()].forEach(resolve);
        break;
      case 'session.created':
      case 'session.updated':
        if (props.info?.parentID && family.has(props.info.parentID)) family.add(props.info.id);
        return;
      default:
        return;
    }
    render();
  }

  function render() {
    for (const [id, card] of cards) {
      if (!pending.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
    const atBottom = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;
    for (const [id, { kind, request }] of [...pending].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (cards.has(id)) continue; // left where it is: moving it would take the focus from a half-written answer
      cards.set(id, kind === 'question' ? questionCard(request) : permissionCard(request));
      list.append(cards.get(id));
    }
    node.hidden = !pending.size && !note.childElementCount;
    onWaiting();
    if (atBottom && pending.size) window.scrollTo({ top: document.documentElement.scrollHeight });
  }

  /** Send an answer; the card goes at once (the replied event confirms it on every device). */
  async function answer(card, out, path, body) {
    const controls = card.querySelector('fieldset.ask-body');
    controls.disabled = true;
    put(out);
    const id = card.dataset.request;
    try {
      await post(withQuery(path, { directory }), body, { signal: ctx.signal });
      resolve(id);
      render();
    } catch (error) {
      if (isAbort(error)) return;
      if (error.status === 404) {
        resolve(id);
        put(note, h('p', { class: 'notice', role: 'status' }, 'That was already answered (on another device?) or withdrawn.'));
        render();
        return;
      }
      controls.disabled = false;
      put(out, errorBox(error, 'Not sent'));
    }
  }

  function questionCard(request) {
    const fields = (request.questions || []).map((question, i) => questionField(question, `${request.id}-${i}`));
    const out = h('div', { 'aria-live': 'assertive' });
    const path = `/question/${encodeURIComponent(request.id)}`;
    const card = h(
      'form',
      { class: 'card ask ask-question', 'data-request': request.id, 'aria-label': 'A question from the agent' },
      h(
        'fieldset',
        { class: 'ask-body' },
        h('p', { class: 'ask-title' }, 'The agent asks you, and waits for your answer'),
        fields.map((f) => f.node),
        out,
        h(
          'div',
          { class: 'row' },
          h('button', { type: 'submit', class: 'button primary' }, 'Answer'),
          h('button', { type: 'button', class: 'button', onclick: () => answer(card, out, `${path}/reject`, {}) }, 'Reject'),
        ),
      ),
    );
    card.addEventListener('input', () => put(out)); // a refusal goes once the person changes their answer
    card.addEventListener('submit', (event) => {
      event.preventDefault();
      const answers = fields.map((f) => f.value());
      const missing = answers.findIndex((a) => !a.length);
      if (missing >= 0) {
        const q = request.questions[missing];
        put(out, errorBox(new Error(`Choose${q.custom === false ? '' : ' or write'} an answer to “${q.header || q.question}”.`)));
        return;
      }
      answer(card, out, `${path}/reply`, { answers });
    });
    return card;
  }

  /** One question: its options as radio buttons (or check boxes when several may be chosen), and a text box for
   * an answer of one's own unless the question rules that out (`custom: false`). */
  function questionField(question, name) {
    const type = question.multiple ? 'checkbox' : 'radio';
    const choices = (question.options || []).map((option) => h('input', { type, name, value: option.label }));
    const own = question.custom === false ? null : h('input', { type: 'text', class: 'ask-own', maxlength: '2000', placeholder: 'Or write your own answer', 'aria-label': `Your own answer to: ${question.question || question.header}` });
    if (own && !question.multiple) {
      // One answer: writing one's own replaces the choice, and choosing replaces what was written.
      own.addEventListener('input', () => own.value && choices.forEach((c) => (c.checked = false)));
      choices.forEach((c) => c.addEventListener('change', () => (own.value = '')));
    }
    const node = h(
      'fieldset',
      { class: 'ask-q' },
      h('legend', { class: 'ask-header' }, question.header || 'Question'),
      h('p', { class: 'ask-text' }, question.question),
      (question.options || []).map((option, i) =>
        h('label', { class: 'ask-option' }, choices[i], h('span', {}, h('span', { class: 'ask-label' }, option.label), option.description ? h('span', { class: 'ask-desc' }, option.description) : null)),
      ),
      own,
    );
    const value = () => [...choices.filter((c) => c.checked).map((c) => c.value), ...(own?.value.trim() ? [own.value.trim()] : [])];
    return { node, value };
  }

  function permissionCard(request) {
    const meta = request.metadata || {};
    const out = h('div', { 'aria-live': 'assertive' });
    const path = `/permission/${encodeURIComponent(request.id)}/reply`;
    const what = [];
    if (typeof meta.command === 'string') what.push(h('pre', { class: 'code' }, `$ ${clip(meta.command)}`));
    else if (typeof meta.filepath === 'string') what.push(h('p', { class: 'path' }, rel(meta.filepath)));
    const patterns = (request.patterns || []).filter((p) => p !== meta.command && p !== meta.filepath);
    if (patterns.length) what.push(h('p', { class: 'ask-patterns' }, 'For: ', patterns.map((p, i) => [i ? ', ' : '', h('code', {}, rel(p))])));
    if (typeof meta.diff === 'string' && meta.diff) what.push(h('pre', { class: 'code' }, clip(meta.diff)));
    const always = (request.always || []).filter(Boolean);
    const card = h(
      'form',
      { class: 'card ask ask-permission', 'data-request': request.id, 'aria-label': 'A permission the agent asks for' },
      h(
        'fieldset',
        { class: 'ask-body' },
        h('p', { class: 'ask-title' }, `${PERMISSION_WORDS[request.permission] || `The agent asks for permission: ${request.permission}`}, and waits for your answer`),
        what,
        always.length ? h('p', { class: 'hint' }, '“Always” allows ', always.map((p, i) => [i ? ', ' : '', h('code', {}, p)]), ' from now on without asking.') : null,
        out,
        h(
          'div',
          { class: 'row' },
          h('button', { type: 'button', class: 'button primary', onclick: () => answer(card, out, path, { reply: 'once' }) }, 'Allow once'),
          h('button', { type: 'button', class: 'button', onclick: () => answer(card, out, path, { reply: 'always' }) }, 'Always'),
          h('button', { type: 'button', class: 'button danger', onclick: () => answer(card, out, path, { reply: 'reject' }) }, 'Deny'),
        ),
      ),
    );
    card.addEventListener('submit', (event) => event.preventDefault());
    return card;
  }

  return { node, load, onEvent, waiting: () => pending.size > 0 };
}
