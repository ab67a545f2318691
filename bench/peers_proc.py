"""Measuring one command's whole process tree: wall time, CPU of every descendant, peak PSS.

Used by ``bench_peers.py`` to hold monitor, newsboat and rss2email to the same yardstick.

CPU comes from ``getrusage(RUSAGE_CHILDREN)``: the kernel adds a process's CPU, and that of
every descendant it waited for, to its parent when the parent waits for it.  A descendant
whose parent exits first (multiprocessing's fork server and resource tracker outlive
``monitor`` by a moment) would be reparented to init and its CPU lost, so this process makes
itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): such orphans become its children, and
are waited for here.  Processes that run across measurements (nginx, Redis) are this
process's children too but are never waited for while measuring, so they stay out of the
figure; a process named in ``apart`` is measured from ``/proc/<pid>/stat`` instead.

Memory is the proportional set size (``Pss:`` of ``/proc/<pid>/smaps_rollup``) summed over the
tree, sampled every ``interval`` seconds: pages that a fork server shares with its parsers
count once in the sum, where RSS would count them once per process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

TICK = os.sysconf("SC_CLK_TCK")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make orphaned descendants this process's children (Linux 3.4+); False if refused."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (every thread's), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    found, frontier = [pid], [pid]
    while frontier:
        kids = children(frontier.pop())
        found += kids
        frontier += kids
    return found


def pss_mb(pids: Iterable[int]) -> float:
    """Summed proportional set size of ``pids``, in MB (2**20 bytes)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and of the children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / TICK


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class PeakSampler:
    """Samples the PSS of a command's tree, and of the ``apart`` processes' trees, until
    stopped; keeps the peak of each sum and the largest number of processes seen."""

    def __init__(self, root: int, apart: Sequence[int], interval: float) -> None:
        self.root = root
        self.apart = list(apart)
        self.interval = interval
        self.peak_mb = 0.0
        self.apart_peak_mb = 0.0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        apart = {p for pid in self.apart for p in tree(pid)}
        mine = [p for p in tree(self.root) if p not in apart]
        self.processes = max(self.processes, len(mine))
        self.peak_mb = max(self.peak_mb, pss_mb(mine))
        if apart:
            self.apart_peak_mb = max(self.apart_peak_mb, pss_mb(apart))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Measured:
    """What one command cost."""

    returncode: int
    started_at: float
    """Wall-clock time (``time.time()``) when the command was started."""
    wall_s: float
    cpu_s: float
    """The command and every descendant (the ``apart`` processes excluded)."""
    apart_cpu_s: float
    """The ``apart`` processes (Redis for monitor), over the same span."""
    peak_pss_mb: float
    apart_peak_pss_mb: float
    processes: int
    lingering: list[int] = field(default_factory=list)
    """Descendants still running ``linger_s`` after the command exited (not counted)."""


def measure(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    cwd: Path,
    stdout: IO[bytes],
    stderr: IO[bytes],
    apart: Sequence[int] = (),
    interval: float = 0.1,
) -> Measured:
    """Run ``argv`` to its end and measure it.  ``apart`` are long-running servers the
    command uses (measured on their own); this process's other children are left alone."""
    keep = set(children(os.getpid()))
    cpu_before = children_cpu()
    apart_before = sum(cpu_seconds(pid) for pid in apart)
    started_at = time.time()
    started = time.perf_counter()
    process = subprocess.Popen(
        list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
    )
    with PeakSampler(process.pid, apart, interval) as sampler:
        returncode = process.wait()
        wall = time.perf_counter() - started
    lingering = reap_orphans(keep | set(apart), linger_s=30.0)
    return Measured(
        returncode=returncode,
        started_at=started_at,
        wall_s=wall,
        cpu_s=children_cpu() - cpu_before,
        apart_cpu_s=sum(cpu_seconds(pid) for pid in apart) - apart_before,
        peak_pss_mb=sampler.peak_mb,
        apart_peak_pss_mb=sampler.apart_peak_mb,
        processes=sampler.processes,
        lingering=lingering,
    )


def reap_orphans(keep: set[int], linger_s: float) -> list[int]:
    """Wait for the descendants that were handed to this subreaper (fork servers, resource
    trackers) so their CPU is counted; return those still running after ``linger_s``."""
    deadline = time.monotonic() + linger_s
    while True:
        orphans = [pid for pid in children(os.getpid()) if pid not in keep]
        for pid in orphans:
            if state(pid) in ("Z", "X", "gone"):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        alive = [pid for pid in orphans if state(pid) not in ("Z", "X", "gone")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)
