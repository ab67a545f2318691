"""Fixtures shared by the whole suite: private Redis servers, local feed/Slack/SMTP servers."""

pytest_plugins = ["support.channel_fixtures"]
