"""Marshmallow schemas for every request body and response of the API."""

from __future__ import annotations

from collections.abc import Callable

from marshmallow import Schema, ValidationError, fields, validate

from domain.names import InvalidName, parse_branch, parse_repo, parse_session_id
from domain.processes import IN_WORKTREE, ORPHAN


def checked_by(parser: Callable[[str], object], error: type[Exception] = InvalidName) -> Callable[[str], None]:
    """A field validator from a domain parser: its `error` becomes a validation error, with the parser's message."""

    def check(value: str) -> None:
        try:
            parser(value)
        except error as exc:
            raise ValidationError(str(exc)) from None

    return check


class RepoField(fields.String):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(validate=checked_by(parse_repo), metadata={"example": "octocat/hello-world"}, **kwargs)


class SessionIdField(fields.String):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(validate=checked_by(parse_session_id), metadata={"example": "ses_01abc"}, **kwargs)


class StrictSchema(Schema):
    class Meta:
        ordered = True


# ---- requests


def model_field() -> fields.String:
    """An optional `provider/model`, as opencode names its models."""
    return fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[A-Za-z0-9._-]{1,100}/[A-Za-z0-9._:/-]{1,200}$", error="must be provider/model"),
        metadata={"example": "openrouter/anthropic/claude-sonnet-4"},
    )


def agent_field() -> fields.String:
    """An optional primary agent of opencode's (`build`, `plan`, ...; GET /admin/agent-options lists them)."""
    return fields.String(
        load_default=None, validate=validate.Regexp(r"^[A-Za-z0-9._-]{1,64}$"), metadata={"example": "plan"}
    )


class AttachmentSchema(StrictSchema):
    filename = fields.String(required=True, validate=validate.Length(min=1, max=200), metadata={"example": "shot.png"})
    mime = fields.String(
        required=True, validate=validate.Length(min=1, max=100), metadata={"description": "image/png, jpeg or webp"}
    )
    data_base64 = fields.String(required=True, validate=validate.Length(min=1), metadata={"description": "the file"})


def attachments_field() -> fields.List:
    return fields.List(
        fields.Nested(AttachmentSchema),
        load_default=list,
        metadata={
            "description": "images for the agent (415 for another type, 413 when together over"
            " MECODES_ATTACHMENTS_MAX_MB, 422 for bad base64 or a model that takes no images)"
        },
    )


class CloneRequest(StrictSchema):
    repo = RepoField(required=True)


class WorktreeRequest(StrictSchema):
    repo = RepoField(required=True)
    session_id = SessionIdField(required=True)
    branch = fields.String(
        load_default=None, validate=checked_by(parse_branch), metadata={"description": "default: mecodes/<session_id>"}
    )


class ForceQuery(StrictSchema):
    force = fields.Boolean(load_default=False, metadata={"description": "discard work / worktrees as well"})


class JobListQuery(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


# ---- responses


class ProgressSchema(StrictSchema):
    step = fields.String(allow_none=True)
    phase = fields.String(allow_none=True, metadata={"description": "git's own phase, e.g. 'Receiving objects'"})
    percent = fields.Integer(allow_none=True)


class JobSchema(StrictSchema):
    id = fields.String(required=True)
    kind = fields.String(allow_none=True)
    status = fields.String(required=True, metadata={"description": "queued, deferred, started, finished, failed, ..."})
    url = fields.String(required=True, metadata={"description": "poll this"})
    description = fields.String(allow_none=True)
    progress = fields.Nested(ProgressSchema, allow_none=True)
    result = fields.Dict(allow_none=True)
    error = fields.String(allow_none=True)
    depends_on = fields.List(fields.String())
    created_at = fields.DateTime(allow_none=True)
    enqueued_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)


class JobListSchema(StrictSchema):
    jobs = fields.List(fields.Nested(JobSchema))


class RepoSchema(StrictSchema):
    repo = fields.String(required=True)
    path = fields.String(required=True)
    default_branch = fields.String(allow_none=True)
    size_bytes = fields.Integer(required=True)
    last_fetch = fields.DateTime(allow_none=True)
    worktree_count = fields.Integer(required=True)


class RepoListSchema(StrictSchema):
    repos = fields.List(fields.Nested(RepoSchema))


class WorktreeSchema(StrictSchema):
    repo = fields.String(required=True)
    session_id = fields.String(required=True)
    path = fields.String(required=True)
    branch = fields.String(allow_none=True)
    head = fields.String(allow_none=True)
    exists = fields.Boolean(metadata={"description": "false when the folder was deleted by hand (GC prunes it)"})
    dirty = fields.Boolean(allow_none=True, metadata={"description": "uncommitted changes, untracked files included"})
    unpushed_commits = fields.Integer(allow_none=True, metadata={"description": "commits not on any remote branch"})
    created_at = fields.DateTime(allow_none=True)
    opencode_session_id = fields.String(allow_none=True, metadata={"description": "the session it belongs to"})
    title = fields.String(allow_none=True, metadata={"description": "the session's title"})
    status = fields.String(allow_none=True, metadata={"description": "the session's status: idle, busy, retry"})


class WorktreeListSchema(StrictSchema):
    worktrees = fields.List(fields.Nested(WorktreeSchema))


class DiskSchema(StrictSchema):
    data_dir = fields.String()
    total_bytes = fields.Integer()
    used_bytes = fields.Integer()
    free_bytes = fields.Integer()
    repos_bytes = fields.Integer()
    worktrees_bytes = fields.Integer()


class ServiceStateSchema(StrictSchema):
    pid = fields.Integer(allow_none=True)
    state = fields.String(metadata={"description": "running, or restarting after it exited"})
    restarts = fields.Integer(metadata={"description": "times procman restarted it after it exited"})
    last_exit = fields.String(allow_none=True, metadata={"description": "how it last ended"})
    due_in = fields.Integer(allow_none=True, metadata={"description": "seconds until the next start, while restarting"})


class HealthSchema(StrictSchema):
    status = fields.String(metadata={"description": "ok or unavailable"})
    redis = fields.Boolean()
    workers = fields.List(fields.String())
    services = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(ServiceStateSchema),
        metadata={"description": "the Procfile's services as procman reports them (empty when procman is not used)"},
    )
    problems = fields.List(fields.String())


class ServiceMemorySchema(StrictSchema):
    name = fields.String()
    pid = fields.Integer(allow_none=True)
    state = fields.String(allow_none=True)
    restarts = fields.Integer()
    last_exit = fields.String(allow_none=True)
    pss_bytes = fields.Integer(
        allow_none=True, metadata={"description": "PSS of the service and its children (opencode: itself only)"}
    )
    oom_score_adj = fields.Integer(allow_none=True, metadata={"description": "higher: killed sooner, out of memory"})


class AgentCommandSchema(StrictSchema):
    pid = fields.Integer()
    command = fields.String()
    pss_bytes = fields.Integer()
    oom_score_adj = fields.Integer(allow_none=True)


class MemorySchema(StrictSchema):
    limit_bytes = fields.Integer(metadata={"description": "what the stack may use"})
    used_bytes = fields.Integer(metadata={"description": "anonymous, shared and mapped memory (page cache excluded)"})
    headroom_bytes = fields.Integer()
    source = fields.String(metadata={"description": "where the limit comes from: cgroup v1/v2, machine or setting"})
    chat_reserve_bytes = fields.Integer(metadata={"description": "headroom a new chat needs to start (else it waits)"})
    agent_restart_bytes = fields.Integer(metadata={"description": "opencode above this is restarted when all is idle"})
    services = fields.List(fields.Nested(ServiceMemorySchema))
    agent_commands = fields.List(fields.Nested(AgentCommandSchema))
    agent_commands_pss_bytes = fields.Integer()
    oom_kills = fields.Integer(metadata={"description": "processes the kernel's OOM killer has ended since boot"})


class GcRequest(StrictSchema):
    dry_run = fields.Boolean(required=True, metadata={"description": "decide and report, change nothing"})
    max_idle_days = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=3650),
        metadata={"description": "remove clean worktrees idle longer than this (default MECODES_GC_MAX_IDLE_DAYS)"},
    )


class GcScheduleSchema(StrictSchema):
    interval_seconds = fields.Integer(metadata={"description": "0: periodic GC is off"})
    scheduler = fields.String(allow_none=True, metadata={"description": "the live scheduler, if any"})
    next_run = fields.DateTime(allow_none=True)


class GcStatusSchema(StrictSchema):
    schedule = fields.Nested(GcScheduleSchema)
    last_run = fields.Dict(allow_none=True, metadata={"description": "summary of the last GC job, dry runs included"})


class ProcessSchema(StrictSchema):
    pid = fields.Integer()
    ppid = fields.Integer()
    user = fields.String(allow_none=True)
    cmdline = fields.String()
    cwd = fields.String(allow_none=True)
    worktree = fields.String(allow_none=True, metadata={"description": "the worktree folder its cwd is in"})
    reason = fields.String(
        validate=validate.OneOf([ORPHAN, IN_WORKTREE]),
        metadata={"description": "orphan: its parent is PID 1; in-worktree: it runs in a worktree"},
    )
    age_seconds = fields.Float()
    cpu_seconds = fields.Float()
    rss_bytes = fields.Integer()


class ProcessListSchema(StrictSchema):
    stack_pid = fields.Integer(metadata={"description": "the process manager, whose services are never listed"})
    processes = fields.List(fields.Nested(ProcessSchema))


class KillResultSchema(StrictSchema):
    pid = fields.Integer()
    terminated = fields.List(fields.Integer(), metadata={"description": "ended after SIGTERM"})
    killed = fields.List(fields.Integer(), metadata={"description": "needed SIGKILL after the grace period"})
    survivors = fields.List(fields.Integer(), metadata={"description": "still alive (should be empty)"})


class NewChatRequest(StrictSchema):
    repo = RepoField(required=True)
    prompt = fields.String(
        load_default=None, validate=validate.Length(min=1, max=50_000), metadata={"description": "the task"}
    )
    branch = fields.String(
        load_default=None, validate=checked_by(parse_branch), metadata={"description": "default: mecodes/chat-..."}
    )
    title = fields.String(load_default=None, validate=validate.Length(min=1, max=200))
    model = model_field()
    agent = agent_field()
    attachments = attachments_field()


class InterruptionSchema(StrictSchema):
    at = fields.DateTime(allow_none=True, metadata={"description": "when the turn was last seen working"})
    why = fields.String(metadata={"description": "why it stopped, as far as is known"})


class WaitingSchema(StrictSchema):
    kind = fields.String(metadata={"description": "question (the agent asked one) or permission (it asks for one)"})
    summary = fields.String(metadata={"description": "one line: the question, or what the permission is for"})


class PromptResultSchema(StrictSchema):
    session_id = fields.String()
    sent = fields.Boolean()


class ContinueResultSchema(StrictSchema):
    session_id = fields.String()
    why = fields.String(metadata={"description": "why the turn had stopped; the agent is told so"})
    closed_steps = fields.List(
        fields.String(), metadata={"description": "tool steps left running, now closed as failed"}
    )


class PromptRequest(StrictSchema):
    text = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    model = model_field()
    agent = agent_field()
    attachments = attachments_field()


class TokensSchema(StrictSchema):
    input = fields.Integer()
    output = fields.Integer()
    reasoning = fields.Integer()
    cache_read = fields.Integer()
    cache_write = fields.Integer()


class CostsSchema(StrictSchema):
    days = fields.Integer(metadata={"description": "how many days (UTC, today included)"})
    since = fields.Date(metadata={"description": "the first of those days"})
    cost = fields.Float(metadata={"description": "dollars, at the prices in opencode's model config"})
    tokens = fields.Nested(TokensSchema)


class ChatSchema(StrictSchema):
    session_id = fields.String(allow_none=True)
    title = fields.String(allow_none=True)
    repo = fields.String(allow_none=True)
    branch = fields.String(allow_none=True)
    status = fields.String(
        allow_none=True,
        metadata={
            "description": "idle, busy, retry, needs-input (the agent waits on the person: `waiting_for`), error (the"
            " last reply failed), stopped (idle: the person stopped the last reply; no error) or interrupted (the last"
            " turn never finished: the stack or opencode stopped meanwhile; POST .../continue carries on); null"
            " without a session"
        },
    )
    last_error = fields.String(allow_none=True, metadata={"description": "why the last reply failed"})
    interruption = fields.Nested(InterruptionSchema, allow_none=True, metadata={"description": "when interrupted"})
    waiting_for = fields.Nested(WaitingSchema, allow_none=True, metadata={"description": "when needs-input"})
    last_activity = fields.DateTime(allow_none=True)
    has_session = fields.Boolean()
    has_worktree = fields.Boolean()
    worktree = fields.String(allow_none=True, metadata={"description": "the worktree's own name"})
    path = fields.String(allow_none=True)
    dirty = fields.Boolean(allow_none=True)
    unpushed_commits = fields.Integer(allow_none=True)
    disk_bytes = fields.Integer(allow_none=True)
    cost = fields.Float(allow_none=True, metadata={"description": "dollars so far, as opencode records them"})
    tokens = fields.Nested(TokensSchema, allow_none=True, metadata={"description": "tokens so far, by kind"})


class ChatListSchema(StrictSchema):
    chats = fields.List(fields.Nested(ChatSchema))


class GitHubReposQuery(StrictSchema):
    q = fields.String(load_default="", validate=validate.Length(max=200), metadata={"description": "filter by name"})
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=10_000))
    refresh = fields.Boolean(load_default=False, metadata={"description": "skip the cached list"})


class GitHubRepoSchema(StrictSchema):
    full_name = fields.String()
    private = fields.Boolean()
    default_branch = fields.String(allow_none=True)
    pushed_at = fields.String(allow_none=True)
    cached = fields.Boolean(metadata={"description": "already cloned here"})


class GitHubRepoListSchema(StrictSchema):
    repos = fields.List(fields.Nested(GitHubRepoSchema))
    page = fields.Integer()
    pages = fields.Integer()
    total = fields.Integer()


class PushRequest(StrictSchema):
    title = fields.String(load_default=None, validate=validate.Length(min=1, max=256))
    body = fields.String(load_default="", validate=validate.Length(max=60_000))
    draft = fields.Boolean(load_default=False)


class LoginClientSchema(StrictSchema):
    address = fields.String(metadata={"description": "the client's address (an IPv6 client's /64)"})
    failures = fields.Integer(metadata={"description": "wrong passwords, each one bcrypt"})
    bans = fields.Integer()
    refused = fields.Integer(metadata={"description": "requests answered 429 while banned, no hash computed"})
    last_at = fields.DateTime(metadata={"description": "its last failure or ban"})
    banned_until = fields.DateTime(allow_none=True, metadata={"description": "the end of a ban still running"})


class LoginLimitsSchema(StrictSchema):
    failures = fields.Integer(metadata={"description": "failures allowed in the window (MECODES_LOGIN_FAILURES)"})
    window_seconds = fields.Integer()
    ban_seconds = fields.Integer(metadata={"description": "the first ban; each further one in 24 h doubles"})
    ban_max_seconds = fields.Integer()


class LoginReportSchema(StrictSchema):
    since = fields.DateTime()
    failures = fields.Integer()
    bans = fields.Integer()
    refused = fields.Integer()
    clients = fields.List(fields.Nested(LoginClientSchema), metadata={"description": "most recent first"})
    limits = fields.Nested(LoginLimitsSchema)


# ---- a chat's changes, as git sees them (domain/changes.py)


class ChangesQuery(StrictSchema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


class ChangeFileQuery(StrictSchema):
    # at most 300: percent-encoded, it must fit in the request line (gunicorn takes 4094 bytes)
    path = fields.String(required=True, validate=validate.Length(min=1, max=300), metadata={"example": "src/app.py"})
    commit = fields.String(
        load_default=None,
        validate=validate.Regexp(r"^[0-9a-f]{40}$", error="must be a commit's full hash (40 hex digits)"),
        metadata={"description": "one of the chat's commits; none: the uncommitted changes"},
    )


class ChangedCommitSchema(StrictSchema):
    hash = fields.String()
    subject = fields.String()
    author = fields.String()
    time = fields.DateTime()


class FileChangeSchema(StrictSchema):
    path = fields.String()
    old_path = fields.String(allow_none=True, metadata={"description": "renamed or copied from"})
    status = fields.String(metadata={"description": "added, modified, deleted, renamed, copied, type-changed, ..."})
    letter = fields.String(metadata={"description": "git's status letter: A, M, D, R, C, T, U"})
    old_mode = fields.String(allow_none=True, metadata={"description": "set when the mode changed"})
    new_mode = fields.String(allow_none=True)
    binary = fields.Boolean(metadata={"description": "no line diff: a binary file, or one over 8 MB"})
    insertions = fields.Integer(allow_none=True)
    deletions = fields.Integer(allow_none=True)
    patch = fields.String(allow_none=True, metadata={"description": "the hunks; null when binary, omitted or none"})
    truncated = fields.Boolean(metadata={"description": "the patch was cut at 256 KB"})
    omitted = fields.Boolean(metadata={"description": "left out (the page's patches keep under 1 MB): ask .../file"})


class ChangeGroupSchema(StrictSchema):
    kind = fields.String(metadata={"description": "uncommitted, or commit"})
    commit = fields.Nested(ChangedCommitSchema, allow_none=True)
    files_total = fields.Integer(metadata={"description": "files in the whole group; a page holds some of them"})


class ChangeGroupPageSchema(ChangeGroupSchema):
    files = fields.List(fields.Nested(FileChangeSchema))


class ChangesSchema(StrictSchema):
    session_id = fields.String()
    repo = fields.String()
    branch = fields.String(allow_none=True)
    base = fields.String(allow_none=True, metadata={"description": "the commits are those not on it: origin/<default>"})
    head = fields.String(allow_none=True)
    files_total = fields.Integer()
    commits_total = fields.Integer(metadata={"description": "the chat's commits listed (at most 100)"})
    commits_more = fields.Boolean(metadata={"description": "older commits were left out"})
    page = fields.Integer()
    pages = fields.Integer()
    next_page = fields.Integer(allow_none=True)
    page_size = fields.Integer()
    groups = fields.List(fields.Nested(ChangeGroupPageSchema))


class ChangeFileSchema(ChangeGroupSchema):
    file = fields.Nested(FileChangeSchema)


# ---- what a chat can be started with (domain/agent_options.py)


class ModelOptionSchema(StrictSchema):
    id = fields.String(metadata={"description": "provider/model, as `model` takes it"})
    name = fields.String()
    provider = fields.String(metadata={"description": "the provider's name"})
    images = fields.Boolean(metadata={"description": "it takes images (attachments)"})


class AgentOptionSchema(StrictSchema):
    name = fields.String()
    description = fields.String()


class AgentOptionsSchema(StrictSchema):
    models = fields.List(fields.Nested(ModelOptionSchema))
    default_model = fields.String(allow_none=True)
    agents = fields.List(fields.Nested(AgentOptionSchema), metadata={"description": "primary agents, hidden ones not"})
    default_agent = fields.String(allow_none=True)
    providers_configured = fields.Boolean(
        metadata={"description": "a provider of the person's own is set up (not only opencode's free models)"}
    )
    attachments_max_bytes = fields.Integer(metadata={"description": "what a message's images may come to, decoded"})
