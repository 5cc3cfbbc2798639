"""Validation of the names callers send: repos, session ids, branches, job ids.

Every value is treated as hostile. A name that passes here is safe to use as a path component and as a git
argument: it never starts with `-` or `.`, never contains `..`, slashes (except single ones in branches),
whitespace, control characters, shell or URL metacharacters, and it is short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# GitHub: owners are alphanumerics and single hyphens, no leading hyphen, at most 39 characters.
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
# GitHub repo names: letters, digits, `.`, `_`, `-`, at most 100. We also refuse a leading `.`/`-`.
_REPO = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
# No `__` in session ids: it separates the parts of a worktree folder name `owner__name__session`.
_SESSION = re.compile(r"(?!.*__)[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_BRANCH_CHARS = re.compile(r"[A-Za-z0-9._/-]{1,200}")
SLUG_SEPARATOR = "__"


class InvalidName(ValueError):
    """A caller-supplied name was refused; the message says why."""


@dataclass(frozen=True, order=True)
class RepoName:
    owner: str
    name: str

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def slug(self) -> str:
        """Folder name `owner__name`. Owners cannot contain `_`, so the first `__` splits it back."""
        return f"{self.owner}{SLUG_SEPARATOR}{self.name}"

    @property
    def key(self) -> str:
        """What identifies the repo: GitHub's names are case-insensitive, so `T/Trunk` and `t/trunk` are one repo
        (one cached folder, one lock, one de-duplication key)."""
        return self.slug.lower()

    @classmethod
    def from_slug(cls, slug: str) -> RepoName:
        owner, sep, name = slug.partition(SLUG_SEPARATOR)
        if not sep:
            raise InvalidName(f"not a repo folder name: {slug!r}")
        return parse_repo(f"{owner}/{name}")


def _shown(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:60] + "...")


def parse_repo(value: str) -> RepoName:
    if not isinstance(value, str):
        raise InvalidName("must be a string of the form owner/name")
    parts = value.split("/")
    if len(parts) != 2:
        raise InvalidName(f"must be of the form owner/name, got {_shown(value)}")
    owner, name = parts
    if not _OWNER.fullmatch(owner):
        raise InvalidName(
            f"owner {_shown(owner)} is not a GitHub owner name (letters, digits and single inner hyphens, at most 39)"
        )
    if not _REPO.fullmatch(name) or name in {".", ".."} or name.endswith(".git"):
        raise InvalidName(
            f"name {_shown(name)} is not a GitHub repo name "
            "(letters, digits, '.', '_', '-', at most 100, not starting with '.' or '-', no '.git' suffix)"
        )
    return RepoName(owner, name)


def parse_session_id(value: str) -> str:
    if not isinstance(value, str) or not _SESSION.fullmatch(value):
        raise InvalidName(
            f"{_shown(str(value))} is not a session id "
            "(letters, digits, '_' and '-', starting with a letter or digit, no '__', at most 128)"
        )
    return value


def parse_job_id(value: str) -> str:
    if not isinstance(value, str) or not _JOB_ID.fullmatch(value):
        raise InvalidName(f"{_shown(str(value))} is not a job id")
    return value


def parse_branch(value: str) -> str:
    """A branch name git accepts (see git-check-ref-format), restricted to a safe character set."""
    if not isinstance(value, str) or not _BRANCH_CHARS.fullmatch(value):
        raise InvalidName(
            f"{_shown(str(value))} is not a branch name (letters, digits, '.', '_', '-', '/', at most 200)"
        )
    components = value.split("/")
    bad = (
        value.startswith(("-", "/"))
        or value.endswith(("/", ".", ".lock"))
        or ".." in value
        or value == "HEAD"
        or any(not c or c.startswith(".") or c.endswith(".lock") for c in components)
    )
    if bad:
        raise InvalidName(f"{_shown(value)} is not a valid git branch name")
    return value


def parse_model(value: str) -> dict[str, str]:
    """`provider/model` (validated by the API's schema) as opencode takes it."""
    provider, _, model_id = value.partition("/")
    return {"providerID": provider, "modelID": model_id}
