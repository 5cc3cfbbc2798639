"""Chats: one job takes a repo and a task to a working agent — the repo cached and fresh, a worktree on a new
branch, an opencode session working in it, the prompt sent — and another takes a chat down again.

A chat that fails part-way is rolled back (its session deleted, its worktree and new branch removed); the
job's error names the phase that failed.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from domain import attachments, procman, repo_ops
from domain.agent_instances import Instances, stop_agents_in
from domain.cancel import CANCELED_TEXT, Canceled, record_creation
from domain.costs import Ledger
from domain.gitcmd import Git
from domain.github import GitHub
from domain.inventory import commits_of_its_own, default_branch, find_by_opencode_session, session_link, work_state
from domain.memory_manager import admits_a_chat, restart_agent_if_idle, waiting_text
from domain.names import RepoName, parse_repo
from domain.opencode import Opencode, OpencodeError, OpencodeUnavailable
from domain.repo_ops import Refused, ensure_cached
from domain.work import StepAside, Work
from domain.work_states import WorkStates

MEMORY_POLL_SECONDS = 2
AGENT_START_WAIT = 60  # seconds a chat waits for opencode to answer again (it restarts in about 5)


@dataclass(frozen=True)
class ChatRequest:
    repo: RepoName
    label: str  # the worktree's own name: owner__name__<label>
    branch: str | None
    title: str
    prompt: str | None
    model: dict[str, str] | None
    agent: str | None = None
    images: bool = False  # its images wait in Redis (domain.attachments) until the prompt goes


def chat_url(session_id: str) -> str:
    """Where the phone opens the chat (the web app's route)."""
    return f"/#/chat/{session_id}"


def wait_for_memory(work: Work, opencode: Opencode) -> None:
    """Return once there is headroom for one more agent (MECODES_CHAT_MEMORY_MB). Meanwhile the job says so in
    its progress, opencode is restarted if it holds memory while every chat is idle, and other queued jobs get
    the worker (deleting a chat frees memory too): the job steps aside and comes back after them."""
    since = work.first_time("waiting for memory")
    while True:
        admitted, now = admits_a_chat(work.settings)
        if admitted:
            return
        work.progress(waiting_text(now, work.settings))
        if time.time() - since > work.settings.chat_memory_wait:
            raise Refused(
                f"no memory for a new chat after {work.settings.chat_memory_wait} s"
                f" ({waiting_text(now, work.settings)}); stop or delete chats, then try again"
            )
        with contextlib.suppress(OpencodeUnavailable, OpencodeError):
            restart_agent_if_idle(opencode, work.redis, work.settings, quiet=0)
        if work.others_waiting():
            raise StepAside("a chat waiting for memory lets other jobs run first")
        time.sleep(MEMORY_POLL_SECONDS)


def wait_for_agent(work: Work, opencode: Opencode) -> None:
    """Return once opencode answers, else raise its last error. When procman runs it, a down opencode is
    coming back (restarted to give memory back, or after a crash), so that is waited for a while."""
    managed = procman.AGENT in procman.services(work.settings.run_dir)
    deadline = time.monotonic() + (AGENT_START_WAIT if managed else 0)
    while True:
        try:
            return opencode.check()
        except OpencodeUnavailable:
            if time.monotonic() > deadline:
                raise
            work.cancel_point()
            time.sleep(0.5)


def start_chat(work: Work, chat: ChatRequest) -> dict[str, Any]:
    opencode = Opencode(work.settings.opencode_url)
    wait_for_memory(work, opencode)  # a chat that steps aside meanwhile comes back to its images
    try:
        return _start_admitted(work, chat, opencode)
    finally:
        attachments.drop(work.redis, chat.label)


def _start_admitted(work: Work, chat: ChatRequest, opencode: Opencode) -> dict[str, Any]:
    phase = "repo"
    with work.lock(chat.repo):
        try:
            work.progress("repo: clone or refresh")
            repo_action = ensure_cached(work, chat.repo, work.settings.fetch_max_age)
            phase = "worktree"
            work.progress("worktree: check out a new branch")
            worktree = repo_ops.add_worktree(work.layout, work.git, chat.repo, chat.label, chat.branch)
            if not worktree.created:
                raise Refused(f"a worktree named {chat.label} already exists")
        except Canceled as exc:  # a clone cut short removes its own staging folder: nothing else to roll back
            raise _canceled_in(phase) from exc
        except Exception as exc:
            raise Refused(f"chat failed in phase {phase}: {exc}") from exc
        session: dict[str, Any] | None = None
        try:
            phase = "session"
            work.progress("session: create the opencode session")
            wait_for_agent(work, opencode)
            metadata = {"mecodes": {"repo": str(chat.repo), "branch": worktree.branch, "worktree": chat.label}}
            session = opencode.create_session(str(worktree.path), chat.title, metadata)
            session_link(work.layout, chat.repo, worktree.path).write_text(session["id"])
            # Deleting this chat from now on cancels this job (DELETE /admin/chats/{session_id}).
            record_creation(work.redis, session["id"], work.job_id, work.settings.job_result_ttl)
            if chat.prompt:
                phase = "prompt"
                work.progress("prompt: send the task")
                files = attachments.stashed(work.redis, chat.label) if chat.images else []
                if files is None:
                    raise Refused("its images were no longer kept (the chat waited too long); start it again")
                opencode.prompt(session["id"], str(worktree.path), chat.prompt, chat.model, chat.agent, files)
            work.cancel_point()  # a cancel that came while the task was being sent still takes the chat back
        except Exception as exc:
            with contextlib.suppress(Canceled):  # a cancel asked for now must not cut the roll-back short
                work.progress(f"{phase} failed: rolling back")
            if session is not None:
                if isinstance(exc, Canceled) and chat.prompt:
                    with contextlib.suppress(OpencodeUnavailable, OpencodeError):
                        opencode.abort(session["id"], str(worktree.path))  # the agent may have started on it
                with contextlib.suppress(OpencodeUnavailable, OpencodeError):
                    opencode.delete(session["id"], str(worktree.path))
            repo_ops.undo_worktree(work.layout, work.git, chat.repo, worktree)
            if isinstance(exc, Canceled):
                raise _canceled_in(phase) from exc
            raise Refused(f"chat failed in phase {phase}: {exc}; it was rolled back") from exc
    return {
        "session_id": session["id"],
        "title": session.get("title"),
        "repo": str(chat.repo),
        "branch": worktree.branch,
        "head": worktree.head,
        "path": str(worktree.path),
        "worktree": chat.label,
        "repo_action": repo_action,
        "prompt_sent": bool(chat.prompt),
        "url": chat_url(session["id"]),
    }


def _canceled_in(phase: str) -> Canceled:
    return Canceled(f"{CANCELED_TEXT} in phase {phase}; what it made was rolled back")


def end_chat(work: Work, session_id: str, force: bool) -> dict[str, Any]:
    """Abort the session if busy (never a raw kill), remove its worktree (refused while it holds work unless
    `force`), then delete the session."""
    opencode = Opencode(work.settings.opencode_url)
    session = opencode.session(session_id)
    worktree = find_by_opencode_session(work.layout, work.git, session_id)
    if session is None and worktree is None:
        raise Refused(f"no chat with session {session_id}")
    directory = session["directory"] if session else str(worktree.path)
    done: dict[str, Any] = {"session_id": session_id, "aborted": False, "worktree_removed": None}
    if session:
        work.progress("abort: stop the agent if it works")
        done["aborted"] = session_id in stop_agents_in(opencode, work.redis, [directory])
    if worktree is not None:
        with work.lock(worktree.repo):
            work.progress("worktree: remove it")
            outcome = repo_ops.remove_worktree(work.layout, work.git, worktree.repo, worktree.session_id, force)
        done["worktree_removed"] = outcome["path"]
    if session:
        work.progress("session: delete it")
        Ledger(work.redis).observe([opencode.session(session_id) or session])  # what it spent stays counted
        opencode.delete(session_id, directory)
        Ledger(work.redis).forget(session_id)
    opencode.dispose(directory)  # the memory opencode held for the chat's folder
    Instances(opencode, work.redis).forget([directory], [session_id])
    return {**done, "session_deleted": bool(session)}


def push_chat(work: Work, session_id: str, title: str | None, body: str, draft: bool) -> dict[str, Any]:
    """Push the chat's branch to origin and open a pull request against the default branch (or find the open
    one). Refused when the branch has no commits of its own."""
    worktree = find_by_opencode_session(work.layout, work.git, session_id)
    if worktree is None or not worktree.exists:
        raise Refused(f"no worktree for session {session_id}")
    repo_path = work.layout.repo_path(worktree.repo)
    with work.lock(worktree.repo):
        base = default_branch(repo_path)
        if not worktree.branch or not base:
            raise Refused("nothing to push: the worktree is not on a branch, or the repo has no default branch")
        require_commits_to_push(work.git, worktree.path, base)
        work.progress("push")
        work.git.run_with_progress(
            ["push", "--progress", "--set-upstream", "origin", f"HEAD:refs/heads/{worktree.branch}"],
            work.git_progress("push"),
            cwd=worktree.path,
        )
        WorkStates(work.layout, work.git, work.redis).forget(worktree.path)  # no longer unpushed
        head = work.git.run(["rev-parse", "HEAD"], cwd=worktree.path).stdout.strip()
        subject = work.git.run(["log", "-1", "--format=%s"], cwd=worktree.path).stdout.strip()
    work.progress("pull request")
    github = GitHub(work.settings.github_api_url, work.settings.github_token)
    pull, created = github.pull_request(
        worktree.repo.owner, worktree.repo.name, worktree.branch, base, title or subject, body, draft
    )
    return {
        "branch": worktree.branch,
        "commit": head,
        "base": base,
        "pr_url": pull.get("html_url"),
        "pr_number": pull.get("number"),
        "pr_created": created,
    }


def require_commits_to_push(git: Git, worktree: Path, base: str) -> None:
    """Raise Refused, saying why, when the branch has no commits beyond origin's default branch."""
    if commits_of_its_own(git, worktree, base) == 0:
        hint = " (its changes are not committed yet)" if work_state(git, worktree).dirty else ""
        raise Refused(f"nothing to push: the branch has no commits beyond origin/{base}{hint}")


def restore_worktree(work: Work, session_id: str) -> dict[str, Any]:
    """Make a chat's removed worktree again, at the folder its session works in and on its branch (a removed
    worktree keeps its branch), so the chat can go on."""
    opencode = Opencode(work.settings.opencode_url)
    session = opencode.session(session_id)
    if session is None:
        raise Refused(f"no chat with session {session_id}")
    made = ((session.get("metadata") or {}).get("mecodes")) or {}
    if not made.get("repo") or not made.get("worktree"):
        raise Refused("this session was not started by mecodes, so there is no worktree to make again")
    repo = parse_repo(made["repo"])
    with work.lock(repo):
        if Path(session["directory"]) != work.layout.worktree_path(repo, made["worktree"]):
            raise Refused("the session works in a folder that is not its chat's worktree; delete the chat instead")
        work.progress("repo: clone or refresh")
        ensure_cached(work, repo, work.settings.fetch_max_age)
        work.progress("worktree: check out its branch")
        worktree = repo_ops.add_worktree(work.layout, work.git, repo, made["worktree"], made.get("branch"))
        session_link(work.layout, repo, worktree.path).write_text(session_id)
    with contextlib.suppress(OpencodeUnavailable, OpencodeError):
        opencode.dispose(session["directory"])  # the instance opencode built for the missing folder
    return {"session_id": session_id, "repo": str(repo), "branch": worktree.branch, "head": worktree.head}
