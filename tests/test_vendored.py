"""The libraries the web app loads from web/vendor/ are exactly the npm packages package.json pins (as
devDependencies, which scripts/test installs into node_modules from package-lock.json): same version, same bytes."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT

# web/vendor/<file> -> (npm package, the file inside it)
VENDORED = {
    "marked.esm.js": ("marked", "lib/marked.esm.js"),
    "purify.es.mjs": ("dompurify", "dist/purify.es.mjs"),
}


@pytest.mark.parametrize("vendored", sorted(VENDORED))
def test_a_vendored_file_is_the_pinned_packages_own(vendored: str) -> None:
    package, inner = VENDORED[vendored]
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"][package]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"{package} must be pinned to an exact version, not {pinned!r}"
    installed = ROOT / "node_modules" / package
    assert installed.is_dir(), f"{package} is not in node_modules: run scripts/test (MECODES_NODE_DEV=1 setup)"
    version = json.loads((installed / "package.json").read_text())["version"]
    assert version == pinned, f"node_modules has {package} {version}, package.json pins {pinned}"
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"][f"node_modules/{package}"]
    assert locked["version"] == pinned, f"package-lock.json has {package} {locked['version']}"
    assert (ROOT / "web" / "vendor" / vendored).read_bytes() == (installed / inner).read_bytes(), (
        f"web/vendor/{vendored} differs from {package} {pinned}'s {inner}: copy it again"
    )


def test_nothing_unlisted_is_vendored() -> None:
    assert sorted(p.name for p in (ROOT / "web" / "vendor").iterdir()) == sorted(VENDORED)
