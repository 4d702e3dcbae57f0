"""The entry points: the web app (`web`), Socket Mode and the development server (`serve`), the worker
(`worker`) and the command line (`cli`).

The outer layer: `models <- bot <- handlers <- credbot`. The core (bot/) never imports the Slack adapter
(handlers/); each entry point plugs it in at start-up (`wiring.wire_slack`).
"""
