"""The docs agree with the code: the README's Slack setup with manifest.yml, `.env.example` with the
settings, and `.gitignore` with what a build leaves behind."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from bot.settings import PROJECT_ROOT, Settings

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
MANIFEST = (PROJECT_ROOT / "manifest.yml").read_text(encoding="utf-8")
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def manifest_urls() -> list[str]:
    return re.findall(r"^\s*(?:url|request_url|message_menu_options_url): (\S+)$", MANIFEST, re.MULTILINE)


def manifest_scopes() -> list[str]:
    block = re.search(r"^  scopes:\n    bot:\n((?:      .*\n)+)", MANIFEST, re.MULTILINE)
    assert block, "manifest.yml has no oauth_config.scopes.bot list"
    return re.findall(r"^      - (\S+)$", block.group(1), re.MULTILINE)


def setup_step(number: int) -> str:
    """Step `number` of the README's "Create the Slack app from the manifest"."""
    section = README.split("### 1. Create the Slack app from the manifest", 1)[1].split("###", 1)[0]
    step = re.search(rf"^{number}\. (.*?)(?=^\d\. |\Z)", section, re.MULTILINE | re.DOTALL)
    assert step, f"no step {number}"
    return " ".join(step.group(1).split())


def test_the_readme_replaces_every_url_of_the_manifest() -> None:
    urls = manifest_urls()
    assert urls and set(urls) == {"https://YOUR-HOST/slack/events"}
    step = setup_step(2)
    said = re.search(r"Replace the (\w+) `(https://YOUR-HOST/\S+)` URLs \(([^)]*)\)", step)
    assert said, step
    assert NUMBER_WORDS[said.group(1)] == len(urls) and said.group(2) == urls[0]
    assert len(said.group(3).split(",")) == len(urls), "the README names each URL"


def test_the_readme_names_every_scope_of_the_manifest() -> None:
    step = setup_step(3)
    said = re.search(r"asks for (\w+) scopes: (.*?)\.", step)
    assert said, step
    named = re.findall(r"`([a-z_:.]+)`", said.group(2))
    assert named == manifest_scopes()
    assert NUMBER_WORDS[said.group(1)] == len(named)


def example_settings() -> dict[str, str]:
    lines = (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_env_example_lists_every_setting_with_the_codes_default(monkeypatch: pytest.MonkeyPatch) -> None:
    example = example_settings()
    fields = {name.upper() for name in Settings.model_fields}
    assert set(example) == fields, "settings missing from .env.example (or there but not in the code)"
    for name in fields:
        monkeypatch.delenv(name, raising=False)
    defaults = Settings(_env_file=None)
    for name, value in example.items():
        field = name.lower()
        default = getattr(defaults, field)
        if value:  # read as credbot reads it: "10" is 10.0, "false" is False
            given: dict[str, Any] = {field: value}
            read = getattr(Settings(_env_file=None, **given), field)
            assert read == default, f".env.example has {name}={value}, the code's default is {default!r}"
        else:
            assert default in (None, ""), (
                f".env.example leaves {name} empty, the code's default is {default!r}"
            )


def test_a_build_leaves_nothing_git_would_add() -> None:
    git = shutil.which("git")
    if git is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("build/lib/bot/__init__.py", "dist/credbot-1.0.tar.gz"):
        ignored = subprocess.run([git, "check-ignore", "-q", path], cwd=PROJECT_ROOT, check=False)
        assert ignored.returncode == 0, f"{path} is not in .gitignore"
