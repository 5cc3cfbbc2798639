// Resources: disk usage, memory, cost, notifications (views/notifications.js), worktrees, cached repos, processes (in
// worktrees, orphans), failed logins, garbage collection, recent jobs.
// Every delete or kill asks first; a refusal from the server is shown in its own words.

import { announce, del, get, jobFailure, onChange, pollJob, post, TERMINAL, withQuery } from '../api.js';
import { usageDetail, usageText } from '../cost.js';
import { badge, bytes, confirmDialog, duration, errorBox, h, isAbort, onVisible, plural, put, throttle, toDate, when } from '../ui.js';
import { settings as notificationSettings } from './notifications.js';

function section(id, title, ...extra) {
  const body = h('div', { class: 'section-body', 'aria-live': 'polite' }, h('p', { class: 'muted' }, 'Loading…'));
  const el = h('section', { class: 'card', id, 'aria-labelledby': `${id}-title` }, h('div', { class: 'row spread' }, h('h2', { id: `${id}-title` }, title), h('div', { class: 'row' }, extra)), body);
  return { el, body };
}

export function render(root, _params, ctx) {
  const disk = section('disk', 'Disk');
  const memory = section('memory', 'Memory');
  const costs = section('costs', 'Cost, last 30 days');
  const notifications = section('notifications', 'Notifications');
  const worktrees = section('worktrees', 'Worktrees');
  const repos = section('repos', 'Cached repos');
  const processes = section('processes', 'Processes');
  const logins = section('logins', 'Failed logins');
  const gcOut = h('div', { class: 'gc-run', 'aria-live': 'polite' });
  const gc = section('gc', 'Garbage collection');
  const jobs = section('jobs', 'Recent jobs');
  const refreshAll = h('button', { type: 'button', class: 'button', onclick: () => loadAll() }, 'Refresh');
  put(root, h('div', { class: 'row spread' }, h('h1', {}, 'Resources'), refreshAll), disk.el, memory.el, costs.el, notifications.el, worktrees.el, repos.el, processes.el, logins.el, gc.el, jobs.el);

  const signal = ctx.signal;
  const notify = notificationSettings(notifications.body, signal);
  async function load(target, path, show) {
    try {
      show(await get(path, { signal }));
    } catch (error) {
      if (!isAbort(error)) put(target.body, errorBox(error, 'Could not load this'));
    }
  }

  /** Confirm, DELETE, follow the job; on 409 show the server's reason and offer the forced delete. */
  async function deleteFlow({ out, url, title, message, forceMessage, force = false }) {
    const ok = await confirmDialog(force ? { title: `${title} and its work?`, message: forceMessage, confirm: 'Delete anyway', danger: true } : { title: `${title}?`, message, confirm: 'Delete', danger: true });
    if (!ok) return;
    try {
      const job = await del(withQuery(url, { force: force ? 'true' : undefined }), { signal });
      const done = await pollJob(job, (j) => put(out, h('p', { class: 'muted' }, `Deleting: ${j.progress?.step || j.status}…`)), signal);
      if (done.status !== 'finished') throw new Error(jobFailure(done));
      put(out, h('p', { class: 'notice' }, 'Deleted.'));
      announce('resources');
    } catch (error) {
      if (isAbort(error)) return;
      put(
        out,
        errorBox(error, 'Not deleted'),
        error.status === 409 && forceMessage ? h('button', { type: 'button', class: 'button danger', onclick: () => deleteFlow({ out, url, title, message, forceMessage, force: true }) }, 'Delete anyway…') : null,
      );
    }
  }

  // ---- disk

  function showDisk(d) {
    const other = Math.max(0, d.used_bytes - d.repos_bytes - d.worktrees_bytes);
    const pct = (n) => `${d.total_bytes ? (100 * n) / d.total_bytes : 0}%`;
    put(
      disk.body,
      h(
        'div',
        { class: 'diskbar', role: 'img', 'aria-label': `${bytes(d.used_bytes)} of ${bytes(d.total_bytes)} used` },
        h('span', { class: 'seg seg-repos', style: `width:${pct(d.repos_bytes)}` }),
        h('span', { class: 'seg seg-worktrees', style: `width:${pct(d.worktrees_bytes)}` }),
        h('span', { class: 'seg seg-other', style: `width:${pct(other)}` }),
      ),
      h('p', {}, `${bytes(d.used_bytes)} of ${bytes(d.total_bytes)} used, ${bytes(d.free_bytes)} free.`),
      h(
        'ul',
        { class: 'legend' },
        h('li', {}, h('span', { class: 'key seg-repos' }), `Repo cache ${bytes(d.repos_bytes)}`),
        h('li', {}, h('span', { class: 'key seg-worktrees' }), `Worktrees ${bytes(d.worktrees_bytes)}`),
        h('li', {}, h('span', { class: 'key seg-other' }), `Everything else ${bytes(other)}`),
      ),
    );
  }

  // ---- memory

  function serviceRow(s) {
    const restarting = s.state === 'restarting';
    return [
      h(
        'tr',
        { 'data-service': s.name },
        h('th', { scope: 'row' }, s.name, h('span', { class: 'mem-restarts' }, plural(s.restarts ?? 0, 'restart'))),
        h('td', { class: 'num' }, bytes(s.pss_bytes)),
        h('td', {}, badge(s.state || 'unknown', restarting ? 'warn' : s.state === 'running' ? 'idle' : 'muted')),
      ),
      s.last_exit ? h('tr', { class: 'mem-exit' }, h('td', { colspan: '3' }, `Last exit of ${s.name}: ${s.last_exit}`)) : null,
    ];
  }

  function commandItem(c) {
    return h(
      'li',
      { class: 'item', 'data-command-pid': String(c.pid) },
      h('code', { class: 'cmd', title: c.command }, c.command || `pid ${c.pid}`),
      h('span', { class: 'item-meta' }, `pid ${c.pid} · ${bytes(c.pss_bytes)}`),
    );
  }

  function showMemory(m) {
    const commands = m.agent_commands || [];
    const services = m.services || [];
    const rest = Math.max(0, m.used_bytes - (m.agent_commands_pss_bytes || 0));
    const pct = (n) => `${m.limit_bytes ? Math.min(100, (100 * n) / m.limit_bytes) : 0}%`;
    const waits = m.headroom_bytes < m.chat_reserve_bytes;
    put(
      memory.body,
      h(
        'div',
        { class: 'diskbar', role: 'img', 'aria-label': `Memory: ${bytes(m.used_bytes)} of ${bytes(m.limit_bytes)} in use` },
        h('span', { class: 'seg seg-stack', style: `width:${pct(rest)}` }),
        h('span', { class: 'seg seg-commands', style: `width:${pct(m.used_bytes - rest)}` }),
      ),
      h('p', {}, `${bytes(m.used_bytes)} used of ${bytes(m.limit_bytes)} (${m.source}), ${bytes(Math.max(0, m.headroom_bytes))} free; a new chat needs ${bytes(m.chat_reserve_bytes)} free, else it waits.`),
      h(
        'ul',
        { class: 'legend' },
        h('li', {}, h('span', { class: 'key seg-stack' }), `The stack and the rest ${bytes(rest)}`),
        h('li', {}, h('span', { class: 'key seg-commands' }), `Agent's commands ${bytes(m.agent_commands_pss_bytes || 0)}`),
      ),
      waits ? h('p', { class: 'warning' }, 'Memory is short: a new chat waits until enough is free.') : null,
      m.oom_kills > 0 ? h('p', { class: 'warning' }, `The out-of-memory killer has ended ${plural(m.oom_kills, 'process', 'processes')} since the machine started.`) : null,
      h('h3', { class: 'mem-head' }, 'Services'),
      services.length
        ? h(
          'table',
          { class: 'mem-table' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Service'), h('th', { scope: 'col', class: 'num' }, 'Memory'), h('th', { scope: 'col' }, 'State'))),
          h('tbody', {}, services.map(serviceRow)),
        )
        : h('p', { class: 'empty' }, 'No figures per service: the stack is not run by its process manager.'),
      m.agent_restart_bytes > 0 ? h('p', { class: 'hint' }, `Between turns, opencode is restarted to give memory back once it holds more than ${bytes(m.agent_restart_bytes)}.`) : null,
      h('h3', { class: 'mem-head' }, "Agent's commands"),
      commands.length ? h('ul', { class: 'list' }, commands.map(commandItem)) : h('p', { class: 'empty' }, 'No agent commands running.'),
    );
  }

  // ---- worktrees

  // An item's messages (a refusal, a result) survive the list being refreshed under them.
  const outs = new Map();
  const outFor = (key) => {
    if (!outs.has(key)) outs.set(key, h('div', { class: 'item-out', 'aria-live': 'polite' }));
    return outs.get(key);
  };

  function worktreeItem(w) {
    const out = outFor(`worktree:${w.path}`);
    const [owner, name] = w.repo.split('/');
    const url = `/admin/worktrees/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/${encodeURIComponent(w.session_id)}`;
    const label = w.title || w.session_id;
    return h(
      'li',
      { class: 'item', 'data-worktree': w.session_id },
      h('span', { class: 'item-title' }, label),
      h('span', { class: 'item-meta' }, [w.repo, w.branch, w.head?.slice(0, 8)].filter(Boolean).join(' · ')),
      h(
        'span',
        { class: 'item-meta' },
        w.status ? badge(w.status === 'retry' ? 'error · retrying' : w.status, w.status === 'retry' ? 'error' : w.status) : null,
        w.dirty ? badge('uncommitted changes', 'warn') : null,
        w.unpushed_commits ? badge(plural(w.unpushed_commits, 'unpushed commit'), 'warn') : null,
        !w.exists ? badge('folder missing', 'error') : null,
        w.dirty === false && !w.unpushed_commits && w.exists ? badge('clean', 'idle') : null,
        ' created ',
        when(w.created_at),
      ),
      h('span', { class: 'path' }, w.path),
      h(
        'div',
        { class: 'row' },
        w.opencode_session_id ? h('a', { class: 'button', href: `#/chat/${encodeURIComponent(w.opencode_session_id)}` }, 'Open chat') : null,
        h('button', {
          type: 'button', class: 'button danger', 'aria-label': `Delete worktree ${label}`,
          onclick: () => deleteFlow({
            out, url, title: `Delete the worktree ${label}`,
            message: `The folder ${w.path} is removed; the branch ${w.branch || ''} is kept in the repo cache.`,
            forceMessage: 'Its uncommitted changes and unpushed commits are lost for good.',
          }),
        }, 'Delete'),
      ),
      out,
    );
  }

  function showWorktrees({ worktrees: list }) {
    put(worktrees.body, list.length ? h('ul', { class: 'list' }, list.map(worktreeItem)) : h('p', { class: 'empty' }, 'No worktrees.'));
  }

  // ---- repos

  function repoItem(r) {
    const out = outFor(`repo:${r.repo}`);
    const fetchButton = h('button', {
      type: 'button', class: 'button',
      onclick: async () => {
        fetchButton.disabled = true;
        try {
          const job = await post('/admin/repos/clone', { repo: r.repo }, { signal });
          const done = await pollJob(job, (j) => put(out, h('p', { class: 'muted' }, `Fetching: ${j.progress?.phase || j.progress?.step || j.status}…`)), signal);
          if (done.status !== 'finished') throw new Error(jobFailure(done));
          put(out, h('p', { class: 'notice' }, `Fetched ${r.repo}.`));
          announce('resources');
        } catch (error) {
          if (!isAbort(error)) put(out, errorBox(error, 'Not fetched'));
        } finally {
          fetchButton.disabled = false;
        }
      },
    }, 'Fetch');
    return h(
      'li',
      { class: 'item', 'data-repo': r.repo },
      h('span', { class: 'item-title' }, r.repo),
      h('span', { class: 'item-meta' }, `${bytes(r.size_bytes)} · default branch ${r.default_branch || '—'} · ${plural(r.worktree_count, 'worktree')} · fetched `, when(r.last_fetch)),
      h(
        'div',
        { class: 'row' },
        fetchButton,
        h('button', {
          type: 'button', class: 'button danger', 'aria-label': `Delete repo ${r.repo}`,
          onclick: () => deleteFlow({
            out, url: `/admin/repos/${r.repo.split('/').map(encodeURIComponent).join('/')}`, title: `Delete the cached repo ${r.repo}`,
            message: 'The bare clone is removed from this machine; it is cloned again when a chat needs it.',
            forceMessage: 'Its worktrees are removed too, with any uncommitted changes and unpushed commits in them.',
          }),
        }, 'Delete'),
      ),
      out,
    );
  }

  function showRepos({ repos: list }) {
    put(repos.body, list.length ? h('ul', { class: 'list' }, list.map(repoItem)) : h('p', { class: 'empty' }, 'No repos cached.'));
  }

  // ---- processes

  function processItem(p) {
    const out = outFor(`process:${p.pid}`);
    const kill = async () => {
      const ok = await confirmDialog({ title: `Kill process ${p.pid}?`, message: `${p.cmdline}\n\nIt gets SIGTERM, then SIGKILL if it is still there after a grace period.`, confirm: 'Kill', danger: true });
      if (!ok) return;
      try {
        const result = await post(`/admin/processes/${p.pid}/kill`, {}, { signal });
        const parts = [['ended', result.terminated], ['killed', result.killed], ['still alive', result.survivors]].filter(([, list]) => list?.length).map(([word, list]) => `${word}: ${list.join(', ')}`);
        put(out, h('p', { class: result.survivors?.length ? 'warning' : 'notice' }, parts.join('; ') || 'Done.'));
        announce('resources');
      } catch (error) {
        if (!isAbort(error)) put(out, errorBox(error, 'Not killed'));
      }
    };
    return h(
      'li',
      { class: 'item', 'data-pid': String(p.pid) },
      h('code', { class: 'cmd', title: p.cmdline }, p.cmdline),
      h('span', { class: 'item-meta' }, `pid ${p.pid} · ${p.reason === 'orphan' ? 'orphan' : 'running'} · up ${duration(p.age_seconds)} · CPU ${duration(p.cpu_seconds)} · ${bytes(p.rss_bytes)}`),
      p.worktree || p.cwd ? h('span', { class: 'path' }, p.worktree ? `in worktree ${p.worktree}` : p.cwd) : null,
      h('div', { class: 'row' }, h('button', { type: 'button', class: 'button danger', onclick: kill, 'aria-label': `Kill process ${p.pid}` }, 'Kill')),
      out,
    );
  }

  function showProcesses({ processes: list }) {
    put(processes.body, list.length ? h('ul', { class: 'list' }, list.map(processItem)) : h('p', { class: 'empty' }, 'Nothing runs in the worktrees, and no orphan.'));
  }

  // ---- failed logins

  function loginItem(c) {
    const bannedUntil = toDate(c.banned_until);
    return h(
      'li',
      { class: 'item', 'data-login': c.address },
      h('span', { class: 'item-title' }, c.address, bannedUntil ? [' ', badge(`banned until ${bannedUntil.toLocaleTimeString()}`, 'warn')] : null),
      h('span', { class: 'item-meta' }, `${plural(c.failures, 'wrong password')} · ${plural(c.bans, 'ban')} · ${plural(c.refused, 'request')} refused · last `, when(c.last_at)),
    );
  }

  function showLogins(r) {
    const limits = r.limits;
    const rule = `An address is banned for ${duration(limits.ban_seconds)} after ${plural(limits.failures, 'wrong password')} within ${duration(limits.window_seconds)}; each further ban within a day lasts twice as long, up to ${duration(limits.ban_max_seconds)}.`;
    put(
      logins.body,
      r.clients.length
        ? h('p', {}, `In the last 24 hours: ${plural(r.failures, 'wrong password')} from ${plural(r.clients.length, 'address', 'addresses')}, ${plural(r.bans, 'ban')}, ${plural(r.refused, 'request')} refused while banned.`)
        : h('p', { class: 'empty' }, 'No failed logins in the last 24 hours.'),
      r.clients.length ? h('ul', { class: 'list' }, r.clients.map(loginItem)) : null,
      h('p', { class: 'hint' }, rule),
    );
  }

  // ---- garbage collection

  const idleInput = h('input', { id: 'gc-idle', type: 'number', min: '0', max: '3650', inputmode: 'numeric', placeholder: 'default' });
  const dryButton = h('button', { type: 'button', class: 'button primary', onclick: () => runGc(true) }, 'Dry run');
  const realButton = h('button', { type: 'button', class: 'button danger', onclick: () => runGc(false) }, 'Collect garbage…');
  const gcControls = h('div', { class: 'gc-controls' }, h('label', { for: 'gc-idle' }, 'Remove clean worktrees idle for more than (days)'), idleInput, h('div', { class: 'row' }, dryButton, realButton));

  function counts(map) {
    return Object.entries(map || {}).map(([what, n]) => `${what}: ${n}`).join(', ') || 'nothing looked at';
  }

  function showGc({ schedule, last_run: last }) {
    const every = schedule.interval_seconds > 0 ? `Runs by itself every ${duration(schedule.interval_seconds)}` : 'Periodic GC is off.';
    put(
      gc.body,
      h('p', {}, every, schedule.interval_seconds > 0 ? (schedule.next_run ? [', next ', when(schedule.next_run), '.'] : '; no scheduler is running right now.') : null),
      last ? h('p', { class: 'muted' }, `Last run${last.dry_run ? ' (dry run)' : ''} `, when(last.started_at), `: ${counts(last.counts)}; ${bytes(last.bytes_freed)} ${last.dry_run ? 'would be ' : ''}freed.`) : h('p', { class: 'muted' }, 'No run yet.'),
      gcControls,
      gcOut,
    );
  }

  function decisionItem(d) {
    const kind = d.action === 'kept' ? 'idle' : 'warn';
    return h('li', { class: 'item' }, h('span', { class: 'item-title' }, badge(d.action, kind), ' ', `${d.kind} ${d.name}`), h('span', { class: 'item-meta' }, d.reason, d.bytes ? ` · ${bytes(d.bytes)}` : ''));
  }

  async function runGc(dryRun) {
    if (!dryRun) {
      const ok = await confirmDialog({ title: 'Collect garbage now?', message: 'Clean, idle worktrees and unused repos are removed. Work is never removed: worktrees holding changes or unpushed commits are kept.', confirm: 'Collect', danger: true });
      if (!ok) return;
    }
    const body = { dry_run: dryRun };
    if (idleInput.value !== '') body.max_idle_days = Number(idleInput.value);
    dryButton.disabled = realButton.disabled = true;
    try {
      const job = await post('/admin/gc', body, { signal });
      const done = await pollJob(job, (j) => put(gcOut, h('p', { class: 'muted' }, `${dryRun ? 'Dry run' : 'Collecting'}: ${j.progress?.step || j.status}…`)), signal);
      if (done.status !== 'finished') throw new Error(jobFailure(done));
      const result = done.result;
      const decisions = result.decisions || [];
      put(
        gcOut,
        h('h3', {}, dryRun ? 'Dry run: what would go' : 'Garbage collected'),
        h('p', {}, `${counts(result.counts)}. ${bytes(result.bytes_freed)} ${dryRun ? 'would be' : ''} freed.`),
        decisions.length ? h('ul', { class: 'list decisions' }, decisions.map(decisionItem)) : h('p', { class: 'empty' }, 'Nothing to look at.'),
      );
      announce('resources');
    } catch (error) {
      if (!isAbort(error)) put(gcOut, errorBox(error, 'Garbage collection failed'));
    } finally {
      dryButton.disabled = realButton.disabled = false;
    }
  }

  // ---- jobs

  function jobItem(j) {
    const kind = j.status === 'finished' ? 'idle' : j.status === 'failed' ? 'error' : j.status === 'started' ? 'busy' : 'muted';
    const result = j.result || {};
    const detail = j.error || (TERMINAL.has(j.status) ? [result.repo, result.branch].filter(Boolean).join(' · ') : j.progress?.step || '');
    return h(
      'li',
      { class: 'item', 'data-job': j.id },
      h('span', { class: 'item-title' }, badge(j.status, kind), ' ', j.kind || 'job', ' ', h('span', { class: 'muted' }, when(j.created_at))),
      detail ? h('span', { class: j.error ? 'item-meta error-text' : 'item-meta' }, detail) : null,
      j.kind === 'chat' && result.url && j.status === 'finished' ? h('a', { href: result.url }, 'Open chat') : null,
    );
  }

  let jobTimer = null;
  function showJobs({ jobs: list }) {
    put(jobs.body, list.length ? h('ul', { class: 'list' }, list.map(jobItem)) : h('p', { class: 'empty' }, 'No recent jobs.'));
    clearTimeout(jobTimer);
    if (list.some((j) => !TERMINAL.has(j.status))) jobTimer = setTimeout(loadJobs, 3000); // follow the active ones
  }
  const loadJobs = () => load(jobs, '/admin/jobs?limit=20', showJobs);

  function loadAll() {
    load(disk, '/admin/disk', showDisk);
    load(memory, '/admin/memory', showMemory);
    load(costs, '/admin/costs', (c) => put(costs.body, h('p', { class: 'cost-total', title: usageDetail(c) }, usageText(c) || 'Nothing spent.'), h('p', { class: 'hint' }, `Since ${c.since} (UTC), deleted chats included, at the prices in opencode's model config.`)));
    load(worktrees, '/admin/worktrees', showWorktrees);
    load(repos, '/admin/repos', showRepos);
    load(processes, '/admin/processes', showProcesses);
    load(logins, '/admin/logins', showLogins);
    notify.load();
    load(gc, '/admin/gc', showGc);
    loadJobs();
  }

  const soon = throttle(loadAll, 1000);
  ctx.onCleanup(onChange((what) => what !== 'pending' && soon()));
  ctx.onCleanup(onVisible(soon));
  const every = setInterval(() => document.visibilityState === 'visible' && soon(), 60000);
  ctx.onCleanup(() => {
    soon.cancel();
    clearInterval(every);
    clearTimeout(jobTimer);
  });
  loadAll();
}
