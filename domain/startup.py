"""`python -m domain.startup CONFIG_PATH`: what bin/start checks and writes before any service starts.

- Every setting is read once, so a bad value stops the start with a message naming its variable, instead of a
  service failing on it, being restarted and failing again.
- opencode's config for the stack is written to CONFIG_PATH (bin/start points OPENCODE_CONFIG at it): language
  servers and formatters off (a language server costs 125 MB or more), no self-update (the image pins the
  version), sessions never shared off the machine, and the agent's commands run through bin/agent-shell/bash, which
  makes them the first victims when memory runs out; GitHub Copilot left out (GITHUB_TOKEN is not its key). The
  person's own settings win over these: opencode's config file on the volume, then MECODES_OPENCODE_CONFIG (JSON),
  merged key by key.
- Processes an earlier stack of this data folder left running in its worktrees (it died without stopping them:
  SIGKILL, a crash) are ended, and said so on stderr: an agent's command never outlives the stack that ran it.
- Notifications: every MECODES_NOTIFY_URLS URL must be one Apprise can send to; the VAPID key pair is made (once).
- opencode is told its plugin SDK needs no install in its config folder (`settle_plugin_sdk`).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import psutil

from domain import channels, processes, vapid
from domain.config import REPO_ROOT, Settings, load_settings
from domain.layout import Layout

STACK_DEFAULTS: dict[str, Any] = {
    "$schema": "https://opencode.ai/config.json",
    "lsp": False,
    "formatter": False,
    "autoupdate": False,
    "share": "disabled",
    "shell": str(REPO_ROOT / "bin" / "agent-shell" / "bash"),
    # GITHUB_TOKEN is in opencode's environment for git's sake; opencode would take it for a Copilot key and offer
    # Copilot's models, which a repo token cannot use. `"disabled_providers": []` in the person's settings undoes it.
    "disabled_providers": ["github-copilot"],
}
CONFIG_VARIABLE = "MECODES_OPENCODE_CONFIG"


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, objects merged key by key (as opencode merges its config files)."""
    merged = dict(base)
    for key, value in override.items():
        both_objects = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if both_objects else value
    return merged


def _object(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"{where} is not valid JSON ({exc}); comments are not allowed there") from None
    if not isinstance(value, dict):
        raise SystemExit(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def opencode_config_folder(environ: dict[str, str]) -> Path | None:
    """opencode's own config folder on the volume (the Procfile's XDG_CONFIG_HOME for it, then `opencode`)."""
    home = environ.get("MECODES_OPENCODE_HOME")
    return Path(home) / "config" / "opencode" if home else None


def person_settings(environ: dict[str, str]) -> list[dict[str, Any]]:
    """The person's own opencode settings, in the order they apply: the file on the volume, then the variable."""
    found = []
    folder = opencode_config_folder(environ)
    volume_file = folder / "opencode.json" if folder else None
    if volume_file is not None and volume_file.is_file():
        found.append(_object(volume_file.read_text(), f"{volume_file} (opencode's config on the volume)"))
    if raw := environ.get(CONFIG_VARIABLE, "").strip():
        found.append(_object(raw, CONFIG_VARIABLE))
    return found


def opencode_config(environ: dict[str, str]) -> dict[str, Any]:
    config = STACK_DEFAULTS
    for settings in person_settings(environ):
        config = merge(config, settings)
    return config


PLUGIN_SDK = "@opencode-ai/plugin"


def settle_plugin_sdk(config_dir: Path) -> None:
    """Tell opencode (its config folder: `$XDG_CONFIG_HOME/opencode`) that its plugin SDK needs no install there.

    At its first config load opencode installs `@opencode-ai/plugin` into that folder, for local plugins the stack
    has none of: 64 MB from npm (effect, zod, the AI SDK), installed inside opencode's own process, which keeps
    opencode's RSS 200 MB higher for its life, and a SIGTERM during the install leaves opencode hanging until it is
    killed. opencode skips the install when node_modules exists and package-lock.json names the package; that is
    laid down here unless node_modules exists already (a person's own install is left alone).
    """
    if (config_dir / "node_modules").exists():
        return
    config_dir.mkdir(parents=True, exist_ok=True)
    lock = {"lockfileVersion": 3, "requires": True, "packages": {"": {"dependencies": {PLUGIN_SDK: "*"}}}}
    (config_dir / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")
    (config_dir / "node_modules").mkdir()


def _describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid} ({' '.join(proc.cmdline()) or proc.name()}, in {proc.cwd()})"
    except psutil.Error:
        return str(proc.pid)


def end_leftovers(settings: Settings) -> None:
    """End what an earlier stack left running in this data folder's worktrees, saying what and how."""
    found = processes.leftovers(Layout(settings.data_dir))
    if not found:
        return
    described = "; ".join(_describe(proc) for proc in found)
    print(f"start: ending processes an earlier stack left running in its worktrees: {described}", file=sys.stderr)
    ended = processes.terminate(set(found), settings.kill_grace)
    print(f"start: {', '.join(f'{how} {pids}' for how, pids in ended.items() if pids)}", file=sys.stderr)


def prepare_notifications(settings: Settings) -> None:
    """The Apprise URLs checked, and the VAPID key pair made now rather than at the first request."""
    channels.check(settings.notify_urls)
    try:
        vapid.ensure(settings.notify_dir)
    except OSError as exc:
        folder = settings.notify_dir
        raise SystemExit(f"MECODES_NOTIFY_DIR ({folder}) cannot hold the VAPID keys: {exc.strerror}") from None
    except vapid.VapidKeyError as exc:
        raise SystemExit(f"MECODES_NOTIFY_DIR: {exc}") from None


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m domain.startup OPENCODE_CONFIG_PATH")
    settings = load_settings()
    end_leftovers(settings)
    prepare_notifications(settings)
    config = opencode_config(dict(os.environ))
    Path(argv[1]).write_text(json.dumps(config, indent=2) + "\n")
    if folder := opencode_config_folder(dict(os.environ)):
        settle_plugin_sdk(folder)


if __name__ == "__main__":
    main(sys.argv)
