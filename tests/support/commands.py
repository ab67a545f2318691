"""Running the real `monitor` command from tests, as a user would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_monitor(
    *args: str, env: dict[str, str] | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """`python -m monitor ARGS` from the repository, output captured; never raises on exit
    status, so tests assert on it.  Without ``env``, the test's own environment minus
    MONITOR_CONFIG (a developer's own config must not leak in)."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "MONITOR_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def kill_daemon(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a daemon started with ``start_new_session=True`` and every process it started
    (its fork server and parser processes, an embedded redis-server), as the crash of its
    container would.  Killing the daemon alone leaves those running, orphaned."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def process_running(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
