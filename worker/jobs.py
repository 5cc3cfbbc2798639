"""RQ job entry points. Each takes plain strings, holds the repo's lock for its writes, reports progress in
`job.meta["progress"]` and leaves a short, redacted reason in `job.meta["error"]` when it fails."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from rq.job import Job, JobStatus

from domain import periodic, repo_ops
from domain.agent_instances import stop_agents_in
from domain.chats import ChatRequest, end_chat, push_chat, restore_worktree, start_chat
from domain.continuing import continue_interrupted
from domain.delivery import deliver
from domain.gc import Collector, Policy
from domain.inventory import all_worktrees, default_branch, repo_worktrees
from domain.locks import repo_lock
from domain.names import RepoName, parse_repo
from domain.notifications import ChatEvent
from domain.opencode import Opencode
from domain.release import give_memory_back
from domain.repo_ops import Refused, ensure_cached
from domain.work_states import WorkStates
from worker.context import JobContext, job_context, reports_errors


def _repo_summary(ctx: JobContext, repo: RepoName) -> dict[str, Any]:
    path = ctx.layout.repo_path(repo)
    return {"repo": str(repo), "path": str(path), "default_branch": default_branch(path)}


@reports_errors
def clone_repo(repo: str) -> dict[str, Any]:
    """Clone `owner/name` into the cache, or refresh it with a fetch when already cached."""
    ctx, name = job_context(), parse_repo(repo)
    with ctx.lock(name):
        action = ensure_cached(ctx, name, max_age=0)
    return {**_repo_summary(ctx, name), "action": action}


@reports_errors
def create_worktree(repo: str, session_id: str, branch: str | None, clone_job_id: str | None = None) -> dict[str, Any]:
    ctx, name = job_context(), parse_repo(repo)
    just_cloned = clone_job_id is not None and _clone_succeeded(ctx, clone_job_id)
    with ctx.lock(name):
        fetched = ensure_cached(ctx, name, max_age=float("inf") if just_cloned else ctx.settings.fetch_max_age)
        ctx.progress("creating worktree")
        worktree = repo_ops.add_worktree(ctx.layout, ctx.git, name, session_id, branch)
    return {
        "repo": str(name),
        "session_id": session_id,
        "path": str(worktree.path),
        "branch": worktree.branch,
        "head": worktree.head,
        "created": worktree.created,
        "repo_action": fetched,
    }


def _clone_succeeded(ctx: JobContext, clone_job_id: str) -> bool:
    """True when the clone job this one waited for finished; raises with its reason when it did not."""
    clone_job = Job.fetch_many([clone_job_id], connection=ctx.redis)[0]
    if clone_job is None:
        return False  # expired: the cache check decides
    if clone_job.get_status() != JobStatus.FINISHED:
        reason = clone_job.get_meta().get("error") or f"it ended {clone_job.get_status()}"
        raise Refused(f"the clone this worktree needs failed (job {clone_job_id}): {reason}")
    return True


@reports_errors
def release_idle_agents() -> dict[str, Any]:
    """See domain.release: opencode's memory for chats idle longer than MECODES_AGENT_IDLE_MINUTES, and a
    restart of opencode when it holds more than MECODES_AGENT_RESTART_MB while every chat is idle."""
    ctx = job_context()
    return give_memory_back(Opencode(ctx.settings.opencode_url), ctx.redis, ctx.settings)


@reports_errors
def refresh_work_states() -> dict[str, Any]:
    """See domain.work_states: what each worktree holds, looked at again for the chat list."""
    ctx = job_context()
    worktrees = all_worktrees(ctx.layout, ctx.git, with_state=False)
    return {"refreshed": WorkStates(ctx.layout, ctx.git, ctx.redis).refresh(worktrees)}


@reports_errors
def collect_garbage(dry_run: bool, max_idle_days: float | None = None) -> dict[str, Any]:
    """See domain.gc. Records its summary for `GET /admin/gc`."""
    ctx = job_context()
    policy = Policy(
        dry_run=dry_run,
        max_idle_days=ctx.settings.gc_max_idle_days if max_idle_days is None else max_idle_days,
        repo_idle_days=ctx.settings.gc_repo_idle_days,
    )

    def lock(repo: RepoName) -> AbstractContextManager[None]:
        ctx.progress(f"collecting garbage: {repo}")
        return repo_lock(ctx.redis, repo, ctx.job.id, ctx.settings.lock_ttl, ctx.settings.clone_timeout)

    started = time.time()
    report = Collector(
        ctx.layout,
        ctx.git,
        ctx.redis,
        lock,
        policy,
        Opencode(ctx.settings.opencode_url),
    ).run()
    summary = {"job_id": ctx.job.id, "started_at": started, "duration_ms": round((time.time() - started) * 1000)}
    periodic.record_last_run(ctx.redis, ctx.settings, {**summary, **report.summary()})
    return {**summary, **report.as_dict()}


def _stop_agents(ctx: JobContext, folders: list[Path]) -> None:
    """Every delete that removes a worktree stops the agent working in it first."""
    ctx.progress("stopping the agents working there")
    stop_agents_in(Opencode(ctx.settings.opencode_url), ctx.redis, folders)


@reports_errors
def delete_worktree(repo: str, session_id: str, force: bool) -> dict[str, Any]:
    ctx, name = job_context(), parse_repo(repo)
    with ctx.lock(name):
        _stop_agents(ctx, [ctx.layout.worktree_path(name, session_id)])
        ctx.progress("removing worktree")
        outcome = repo_ops.remove_worktree(ctx.layout, ctx.git, name, session_id, force)
    return {"repo": str(name), "session_id": session_id, **outcome}


@reports_errors
def delete_repo(repo: str, force: bool) -> dict[str, Any]:
    ctx, name = job_context(), parse_repo(repo)
    with ctx.lock(name):
        if not ctx.layout.is_cached(name):
            raise Refused(f"{name} is not cached")
        worktrees = repo_worktrees(ctx.layout, ctx.git, name, with_state=False)
        if worktrees and not force:
            sessions = ", ".join(w.session_id for w in worktrees)
            raise Refused(f"{name} still has worktrees (sessions: {sessions}); use force=true to remove them too")
        _stop_agents(ctx, [w.path for w in worktrees])
        ctx.progress("removing repo")
        repo_ops.remove_repo(ctx.layout, name, [w.path for w in worktrees])
    return {"repo": str(name), "removed_worktrees": [w.session_id for w in worktrees]}


@reports_errors
def create_chat(
    repo: str,
    label: str,
    branch: str | None,
    title: str,
    prompt: str | None,
    model: dict[str, str] | None,
    agent: str | None = None,
    images: bool = False,
) -> dict[str, Any]:
    chat = ChatRequest(parse_repo(repo), label, branch, title, prompt, model, agent, images)
    return start_chat(job_context(), chat)


@reports_errors
def delete_chat(session_id: str, force: bool) -> dict[str, Any]:
    return end_chat(job_context(), session_id, force)


@reports_errors
def push_chat_branch(session_id: str, title: str | None, body: str, draft: bool) -> dict[str, Any]:
    return push_chat(job_context(), session_id, title, body, draft)


@reports_errors
def restore_chat_worktree(session_id: str) -> dict[str, Any]:
    return restore_worktree(job_context(), session_id)


@reports_errors
def continue_interrupted_chats() -> dict[str, Any]:
    return continue_interrupted(job_context())


@reports_errors
def notify(event: dict[str, Any], device_id: str | None = None) -> dict[str, Any]:
    """Send a ChatEvent (domain.notifications) to the devices that want it and the Apprise channels; `device_id`:
    to that device alone (the test button). See domain.delivery."""
    ctx = job_context()
    return deliver(ctx.settings, ctx.redis, ChatEvent.from_dict(event), device_id, ctx.job_id)
