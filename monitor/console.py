"""The ``monitor`` console script's entry point, which imports nothing until it is called.

A parser process (``monitor.workers``) started through multiprocessing's fork server first
imports its parent's main script again, as ``__mp_main__``.  A console script imports its
entry point's module at its top; were that ``monitor.cli``, every parser process would load
the daemon's HTTP client, Redis, settings and delivery modules, some 30 MB each that parsing
never uses.  (``python -m monitor`` is spared: multiprocessing skips a ``__main__`` module.)
"""

from __future__ import annotations


def main() -> int:
    from monitor.cli import main as run_command

    return run_command()
