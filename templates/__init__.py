"""Jinja2 templates, shipped inside the installed package: `emails/` (plain text and HTML) and `portal/`."""

from pathlib import Path

TEMPLATES_DIR = Path(__file__).resolve().parent
