"""The core's `credbot` commands (the same data as the Slack app, without Slack); the group that gathers
them, with the commands that start processes, is the entry point `credbot.cli`."""
