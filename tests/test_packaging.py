"""An installed credbot (a built wheel, run from another folder) finds its templates and migrations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.settings import PROJECT_ROOT

SOURCES = ("bot", "handlers", "models", "templates", "pyproject.toml", "README.md")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of the working tree, installed into a folder of its own (the dependencies are .venv's)."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    for name in SOURCES:
        path = PROJECT_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=IGNORED)
        else:
            shutil.copy2(path, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    wheels = work / "wheels"
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source], check=True)
    (wheel,) = wheels.glob("credbot-*.whl")
    target = work / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", target, wheel], check=True)
    return target


def run_installed(installed: Path, cwd: Path, *args: str) -> str:
    """`credbot ARGS` from the installed copy only, in `cwd` (no `.env`, mail to cwd/outbox)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(installed),
        "DATABASE_URL": f"sqlite:///{cwd / 'credbot.db'}",
        "SENDGRID_API_KEY": "",
        "OUTBOX_DIR": str(cwd / "outbox"),
    }
    code = "import sys; from credbot.cli import main; sys.exit(main())"
    result = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def test_an_installed_wheel_sends_mail_from_another_folder(installed: Path, tmp_path: Path) -> None:
    assert "credbot" in run_installed(installed, tmp_path, "--help")
    probe = "import bot, templates; print(bot.__file__); print(templates.TEMPLATES_DIR)"
    env = {**os.environ, "PYTHONPATH": str(installed)}
    paths = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert all(Path(path).is_relative_to(installed) for path in paths), paths

    shutil.copy2(PROJECT_ROOT / "samples" / "employees.csv", tmp_path / "hr.csv")
    for args in (
        ("db", "upgrade"),
        ("employees", "import", "hr.csv"),
        ("accounts", "create", "--all-missing"),
        ("credentials", "send", "--all-pending", "--yes"),
    ):
        run_installed(installed, tmp_path, *args)
    emails = sorted((tmp_path / "outbox").glob("*.eml"))
    assert len(emails) == 20, emails  # a welcome and a username email for each of the 10 sample employees
    welcome = next(path.read_text() for path in emails if "welcome" in path.name)
    assert "Content-Type: text/html" in welcome and "Content-Type: text/plain" in welcome


def test_an_installed_wheel_serves_the_portal_pages(installed: Path, tmp_path: Path) -> None:
    probe = (
        "from bot.context import Context; from bot.settings import Settings;"
        "from credbot.web import create_web_app;"
        "app = create_web_app(Context.from_settings(Settings(_env_file=None, secret_key='k' * 32)));"
        "client = app.test_client();"
        "page = client.get('/portal/login'); css = client.get('/portal/static/portal.css');"
        "print(page.status_code, css.status_code, b'<form' in page.data);"
        "import templates; print(templates.TEMPLATES_DIR)"
    )
    env = {**os.environ, "PYTHONPATH": str(installed), "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    *answers, templates_dir = result.stdout.split()
    assert answers == ["200", "200", "True"], result.stderr
    assert Path(templates_dir).is_relative_to(installed)
