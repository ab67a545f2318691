"""The daemon serves the console when ``console.enabled``, and stops it with itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from support.commands import REPO, kill_daemon
from support.samples import KZ_TUNGSTEN_RULES
from support.servers import unused_port
from support.waiting import wait_until

from console.harness import users
from monitor.app.embedded_redis import EmbeddedRedis


def _status(url: str) -> int:
    """The HTTP status of a GET (0: nothing answers)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


@pytest.mark.slow
def test_the_daemon_starts_the_console_and_stops_it_on_sigterm(
    tmp_path: Path, own_redis: EmbeddedRedis
) -> None:
    port = unused_port()
    rules = tmp_path / "rules.yaml"
    rules.write_text(KZ_TUNGSTEN_RULES, encoding="utf-8")
    ana = users()["ana"]["password_hash"]
    config = tmp_path / "monitor.yaml"
    config.write_text(
        f"""\
redis: {{url: "{own_redis.url}"}}
rules: {{paths: ["{rules}"]}}
ingest: {{workers: 0}}
health: {{port: 0}}
log: {{format: json}}
console:
  enabled: true
  port: {port}
  secure_cookie: false
  users: {{ana: {{password_hash: '{ana}', role: analyst}}}}
""",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    log_path = tmp_path / "daemon.log"
    with log_path.open("w") as sink:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            env=env,
            cwd=REPO,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        login = f"http://127.0.0.1:{port}/login"
        wait_until(lambda: _status(login) == 200, 60, f"the console\n{log_path.read_text()}")
        assert _status(f"http://127.0.0.1:{port}/stories") == 200  # redirected to the form
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log_path.read_text()
    finally:
        kill_daemon(daemon)
    log = log_path.read_text()
    assert '"console listening"' in log
    assert ana not in log
    assert _status(login) == 0
