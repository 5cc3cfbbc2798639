"""Running git: argument lists only (never a shell), a timeout, no prompts, secrets kept out of output.

Authentication for the remote goes through bin/git-credential-mecodes, named in the environment
(GIT_CONFIG_COUNT/KEY/VALUE), which reads GITHUB_TOKEN when git asks: the token is never in an argument,
a remote URL or a config file. (bin/start points the agent's own git at the same helper.)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from domain.cancel import Canceled
from domain.config import Settings
from domain.redaction import redact

ProgressCallback = Callable[[str, int], None]

CANCEL_POLL_SECONDS = 0.25  # how often a running network command asks whether its work was cancelled
_PROGRESS = re.compile(r"(?P<phase>[A-Za-z][A-Za-z ]+):\s+(?P<percent>\d{1,3})%")
CREDENTIAL_HELPER = str(Path(__file__).resolve().parent.parent / "bin" / "git-credential-mecodes")


class GitError(RuntimeError):
    """git failed; the message is safe to show (secrets redacted)."""


@dataclass(frozen=True)
class GitResult:
    stdout: str
    stderr: str


# Long commands die with the process that started them (a killed worker leaves no git running). setpriv
# sets that up without a `preexec_fn`, which would force a slow fork() instead of vfork() for every git call.
_TIED = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


class Git:
    """`cancelled`, when given, is asked a few times a second while a network command runs (clone, fetch, push):
    when it says yes, the command is killed and `Canceled` raised. Local commands run to their end: they are
    short, and a checkout cut short would leave its new branch behind."""

    def __init__(self, settings: Settings, cancelled: Callable[[], bool] | None = None):
        self.settings = settings
        self.cancelled = cancelled
        self.env = self._environment()

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_ASKPASS="/bin/false",
            SSH_ASKPASS="/bin/false",
            GIT_ALLOW_PROTOCOL="file:http:https",
            LC_ALL="C",
        )
        env.pop("SSH_ASKPASS_REQUIRE", None)
        if self.settings.github_token:
            # Scope the helper to the configured host, after clearing any helper from other config.
            scope = self.settings.git_base_url
            pairs = [("credential.helper", ""), (f"credential.{scope}.helper", CREDENTIAL_HELPER)]
            env["GIT_CONFIG_COUNT"] = str(len(pairs))
            for i, (key, value) in enumerate(pairs):
                env[f"GIT_CONFIG_KEY_{i}"] = key
                env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    def _clean(self, text: str) -> str:
        return redact(text, self.settings.secrets)

    def _failure(self, args: Sequence[str], stderr: str, detail: str) -> GitError:
        lines = self._clean(stderr).strip().splitlines()
        # git's own verdict ("fatal: ...", "error: ...") says it best; otherwise the last lines.
        verdict = [line for line in lines if line.startswith(("fatal:", "error:"))] or lines
        tail = "\n".join(verdict[-5:])
        what = " ".join(args[:2])
        return GitError(f"git {what} {detail}" + (f": {tail}" if tail else ""))

    def run(
        self,
        args: Sequence[str],
        cwd: Path | None = None,
        stdin: str | None = None,
        long: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> GitResult:
        """A local command. `long` ones (checkouts, gc) get the clone timeout and die with their caller. `env` adds
        variables (GIT_INDEX_FILE, say)."""
        timeout = self.settings.clone_timeout if long else self.settings.git_query_timeout
        try:
            proc = subprocess.run(
                [*(_TIED if long else []), "git", *args],
                cwd=cwd,
                env={**self.env, **env} if env else self.env,
                input=stdin if stdin is not None else "",
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise self._failure(args, str(exc.stderr or ""), f"timed out after {timeout:g}s") from None
        except OSError as exc:  # e.g. its folder was removed meanwhile
            raise self._failure(args, "", f"could not start ({exc.strerror}: {cwd})") from None
        if proc.returncode != 0:
            raise self._failure(args, proc.stderr, f"failed (exit {proc.returncode})")
        return GitResult(proc.stdout, self._clean(proc.stderr))

    def read_capped(
        self, args: Sequence[str], limit: int, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> tuple[str, bool]:
        """A local read whose output is cut at `limit` bytes, the command ended there: a huge diff costs no more
        memory than the part that is kept. Returns (output, whether it was cut)."""
        timeout = self.settings.git_query_timeout
        with tempfile.TemporaryFile() as errors:
            watched = self._watched(args, cwd, env, timeout, None, stdout=subprocess.PIPE, stderr=errors)
            with watched as (proc, watchdog):
                assert proc.stdout is not None
                with proc.stdout:
                    data = proc.stdout.read(limit + 1)
                cut = len(data) > limit
                if cut:
                    watchdog.kill()
                returncode = proc.wait()
            errors.seek(0)
            stderr = errors.read().decode("utf-8", "replace")
        if watchdog.fired == "timeout":
            raise self._failure(args, stderr, f"timed out after {timeout:g}s")
        if returncode != 0 and not cut:
            raise self._failure(args, stderr, f"failed (exit {returncode})")
        return data[:limit].decode("utf-8", "replace"), cut

    def run_with_progress(
        self, args: Sequence[str], on_progress: ProgressCallback, cwd: Path | None = None, timeout: float | None = None
    ) -> GitResult:
        """Run a network command with `--progress`, reporting (phase, percent) as git prints them. Its whole process
        group is killed on time-out, on cancel, and when the caller is interrupted (`on_progress` raising, say)."""
        timeout = timeout or self.settings.clone_timeout
        stderr_lines: list[str] = []
        streams = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        with self._watched(args, cwd, None, timeout, self.cancelled, tied=True, **streams) as (proc, watchdog):
            assert proc.stderr is not None
            for line in _progress_lines(proc.stderr):
                match = _PROGRESS.search(line)
                if match:
                    on_progress(match["phase"].strip(), min(100, int(match["percent"])))
                else:
                    stderr_lines.append(line)
                    del stderr_lines[:-20]
            returncode = proc.wait()
        stderr = "\n".join(stderr_lines)
        if watchdog.fired == "cancel":
            raise Canceled()
        if watchdog.fired == "timeout":
            raise self._failure(args, stderr, f"timed out after {timeout:g}s")
        if returncode != 0:
            raise self._failure(args, stderr, f"failed (exit {returncode})")
        return GitResult("", self._clean(stderr))

    @contextlib.contextmanager
    def _watched(
        self,
        args: Sequence[str],
        cwd: Path | None,
        env: Mapping[str, str] | None,
        timeout: float,
        cancelled: Callable[[], bool] | None,
        tied: bool = False,
        **streams: Any,
    ) -> Iterator[tuple[subprocess.Popen[bytes], _Watchdog]]:
        """git started in a process group of its own, which is killed whole at `timeout`, when `cancelled` says so,
        and when the body raises; the body waits for it. `tied`: it dies with its caller too."""
        try:
            proc = subprocess.Popen(
                [*(_TIED if tied else []), "git", *args],
                cwd=cwd,
                env={**self.env, **env} if env else self.env,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **streams,
            )
        except OSError as exc:
            raise self._failure(args, "", f"could not start ({exc.strerror}: {cwd})") from None
        watchdog = _Watchdog(proc.pid, timeout, cancelled)
        try:
            yield proc, watchdog
        except BaseException:
            watchdog.kill()
            proc.wait()
            raise
        finally:
            watchdog.stop()


class _Watchdog:
    """Kills a command's process group when its time is up or its work is cancelled; `fired` says which."""

    def __init__(self, pgid: int, timeout: float, cancelled: Callable[[], bool] | None):
        self.pgid = pgid
        self.fired: str | None = None
        self._deadline = time.monotonic() + timeout
        self._cancelled = cancelled
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"git-watchdog-{pgid}", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while (left := self._deadline - time.monotonic()) > 0:
            if self._done.wait(min(left, CANCEL_POLL_SECONDS) if self._cancelled else left):
                return
            if self._cancel_asked():
                self.fired = "cancel"
                self.kill()
                return
        self.fired = "timeout"
        self.kill()

    def _cancel_asked(self) -> bool:
        try:
            return bool(self._cancelled and self._cancelled())
        except Exception:  # e.g. Redis is restarting: the deadline must still hold, so ask again next time
            return False

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _progress_lines(stream: IO[bytes]) -> Iterator[str]:
    """Yield lines split on either CR (git's progress updates) or LF."""
    buffer = b""
    while chunk := stream.read1(65536):
        buffer += chunk
        *lines, buffer = re.split(rb"[\r\n]", buffer)
        for line in lines:
            if line.strip():
                yield line.decode("utf-8", "replace")
    if buffer.strip():
        yield buffer.decode("utf-8", "replace")


class ProgressThrottle:
    """Pass progress on at most every `interval` seconds, and always on a phase change."""

    def __init__(self, sink: ProgressCallback, interval: float = 0.5):
        self.sink = sink
        self.interval = interval
        self._last: tuple[str, float] = ("", 0.0)

    def __call__(self, phase: str, percent: int) -> None:
        now = time.monotonic()
        last_phase, last_time = self._last
        if phase != last_phase or percent == 100 or now - last_time >= self.interval:
            self._last = (phase, now)
            self.sink(phase, percent)
