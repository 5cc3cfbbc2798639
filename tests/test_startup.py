"""domain.startup's part of opencode's config folder: its plugin SDK is not installed there (see settle_plugin_sdk)."""

from __future__ import annotations

import json
from pathlib import Path

from domain.startup import PLUGIN_SDK, settle_plugin_sdk


def test_a_fresh_config_folder_says_the_plugin_sdk_needs_no_install(tmp_path: Path) -> None:
    folder = tmp_path / "config" / "opencode"
    settle_plugin_sdk(folder)
    lock = json.loads((folder / "package-lock.json").read_text())
    assert PLUGIN_SDK in lock["packages"][""]["dependencies"]
    assert list((folder / "node_modules").iterdir()) == []


def test_a_persons_own_install_is_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "opencode"
    (folder / "node_modules" / "left-pad").mkdir(parents=True)
    (folder / "package-lock.json").write_text('{"packages": {"": {"dependencies": {"left-pad": "1.3.0"}}}}')
    settle_plugin_sdk(folder)
    assert json.loads((folder / "package-lock.json").read_text())["packages"][""]["dependencies"] == {
        "left-pad": "1.3.0"
    }
    assert [p.name for p in (folder / "node_modules").iterdir()] == ["left-pad"]
