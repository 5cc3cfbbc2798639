// The chat's Changes tab: what git sees in its worktree (GET /admin/chats/{id}/changes), whoever made the
// changes (the agent's edits, its shell commands, a person): the uncommitted files, then each of the chat's own
// commits, a page of files at a time, each file's patch folded until opened.

import { get, withQuery } from '../api.js';
import { badge, errorBox, h, isAbort, plural, put, when } from '../ui.js';

const MAX_DIFF_LINES = 1500;
const LETTER_KIND = { A: 'added', M: 'modified', D: 'deleted', R: 'renamed', C: 'renamed', T: 'modified', U: 'deleted' };

/** A unified diff, line by line, coloured by kind. */
export function patchBlock(patch) {
  const lines = patch.split('\n');
  const shown = lines.slice(0, MAX_DIFF_LINES).map((line) => {
    const kind = line.startsWith('@@') ? 'hunk' : line.startsWith('+++') || line.startsWith('---') || line.startsWith('diff ') || line.startsWith('index ') ? 'meta' : line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : 'ctx';
    return h('span', { class: `line ${kind}` }, `${line}\n`);
  });
  const more = lines.length > MAX_DIFF_LINES ? h('span', { class: 'line meta' }, `… ${lines.length - MAX_DIFF_LINES} more lines`) : null;
  return h('pre', { class: 'diff', tabindex: '0' }, shown, more);
}

/** What a file's body says when there is no patch to show. */
function noPatch(file) {
  if (file.binary) return 'Binary file (or over 8 MB): no line-by-line diff.';
  if (file.status === 'renamed' || file.status === 'copied') return `${file.status === 'renamed' ? 'Renamed' : 'Copied'} from ${file.old_path}, content unchanged.`;
  if (file.old_mode) return 'Only its mode changed.';
  return 'No line-by-line diff for this file.';
}

/**
 * The tab's content in `root`. `load()` reads the first page again (on opening the tab, when a turn ends);
 * `onCount(n)` hears how many files differ.
 */
export function changesView(root, sessionId, { signal, onCount }) {
  const url = `/admin/chats/${encodeURIComponent(sessionId)}/changes`;
  const opened = new Set(); // files the reader unfolded ("<group>:<path>"), kept open across refreshes
  let seq = 0;
  let groups = new Map(); // group key → its list of files
  let shownFiles = new Set();

  const groupKey = (group) => group.commit?.hash || 'uncommitted';

  function fileNode(key, file) {
    const id = `${key}:${file.path}`;
    const body = h('div', { class: 'file-body' });
    const fill = (f) => {
      const notes = [];
      if (f.truncated) notes.push(h('p', { class: 'muted' }, 'The patch is cut here: the rest of the file is not shown.'));
      put(body, f.patch ? patchBlock(f.patch) : h('p', { class: 'muted' }, f.omitted ? 'Loading the patch…' : noPatch(f)), notes);
    };
    fill(file);
    const counts = file.insertions === null ? null : [h('span', { class: 'add' }, `+${file.insertions}`), ' ', h('span', { class: 'del' }, `−${file.deletions}`)];
    const details = h(
      'details',
      { class: 'file-diff', open: opened.has(id) },
      h(
        'summary',
        {},
        badge(file.letter, LETTER_KIND[file.letter] || 'modified'),
        ' ',
        h('span', { class: 'path' }, file.path),
        file.old_path ? h('span', { class: 'muted' }, ` ← ${file.old_path}`) : '',
        ' ',
        counts,
        file.old_mode ? h('span', { class: 'muted' }, ` mode ${file.old_mode} → ${file.new_mode}`) : '',
        h('span', { class: 'visually-hidden' }, ` ${file.status}`),
      ),
      body,
    );
    let fetched = !file.omitted;
    details.addEventListener('toggle', async () => {
      if (!details.open) {
        opened.delete(id);
        return;
      }
      opened.add(id);
      if (fetched) return; // a patch the page left out (over its size budget) is read when the file is opened
      fetched = true;
      try {
        const one = await get(withQuery(`${url}/file`, { path: file.path, commit: key === 'uncommitted' ? undefined : key }), { signal });
        fill(one.file);
      } catch (error) {
        fetched = false;
        if (!isAbort(error)) put(body, errorBox(error, 'Could not load the patch'));
      }
    });
    return details;
  }

  function groupNode(group) {
    const list = h('div', { class: 'change-files' });
    const c = group.commit;
    const head = c
      ? [h('h2', { class: 'change-title' }, c.subject || '(no subject)'), h('p', { class: 'item-meta' }, h('code', {}, c.hash.slice(0, 8)), ` · ${c.author} · `, when(c.time), ` · ${plural(group.files_total, 'file')}`)]
      : [h('h2', { class: 'change-title' }, 'Uncommitted changes'), h('p', { class: 'item-meta' }, plural(group.files_total, 'file'))];
    groups.set(groupKey(group), list);
    return h('section', { class: 'change-group', 'aria-label': c ? `Commit ${c.subject}` : 'Uncommitted changes' }, head, list);
  }

  /** The groups of a page: new ones appended, files of a group already shown added to it. */
  function addPage(page, into) {
    for (const group of page.groups) {
      const key = groupKey(group);
      if (!groups.has(key)) into.append(groupNode(group));
      for (const file of group.files) {
        if (shownFiles.has(`${key}:${file.path}`)) continue; // the changes moved between two pages
        shownFiles.add(`${key}:${file.path}`);
        groups.get(key).append(fileNode(key, file));
      }
      if (!group.files.length && group.commit) groups.get(key).append(h('p', { class: 'muted' }, 'No files changed in this commit.'));
    }
  }

  function moreButton(page, list, slot) {
    if (!page.next_page) return put(slot);
    const button = h('button', { type: 'button', class: 'button' }, `More (page ${page.next_page} of ${page.pages})`);
    button.addEventListener('click', async () => {
      button.disabled = true;
      const mine = seq;
      try {
        const next = await get(withQuery(url, { page: page.next_page }), { signal });
        if (mine !== seq) return;
        addPage(next, list);
        moreButton(next, list, slot);
      } catch (error) {
        button.disabled = false;
        if (!isAbort(error)) put(slot, errorBox(error, 'Could not load more'), button);
      }
    });
    put(slot, button);
  }

  async function load() {
    const mine = ++seq;
    if (!root.childElementCount) put(root, h('p', { class: 'muted' }, 'Loading changes…'));
    root.setAttribute('aria-busy', 'true');
    try {
      const page = await get(url, { signal });
      if (mine !== seq) return;
      onCount?.(page.files_total);
      groups = new Map();
      shownFiles = new Set();
      const list = h('div', { class: 'change-list' });
      const slot = h('div', {});
      addPage(page, list);
      const base = page.base ? ` against ${page.base}` : '';
      const summary = page.groups.length
        ? [`${plural(page.files_total, 'file')} changed${base}`, page.commits_total ? `, ${plural(page.commits_total, 'commit')} of this chat${page.commits_more ? ' (the newest shown)' : ''}` : '', '.']
        : `No changes: the worktree matches ${page.base || 'where it started'}.`;
      put(root, h('p', { class: page.groups.length ? 'muted' : 'empty' }, summary), list, slot);
      moreButton(page, list, slot);
    } catch (error) {
      if (isAbort(error) || mine !== seq) return;
      put(root, errorBox(error, 'Could not load the changes'), h('button', { type: 'button', class: 'button', onclick: load }, 'Try again'));
    } finally {
      if (mine === seq) root.removeAttribute('aria-busy');
    }
  }

  return { load };
}
