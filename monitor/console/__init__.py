"""The analysts' web console: pages over the stores in Redis, served by the daemon on a port of
its own (``console:`` in the config; off unless enabled, never without access control).

Stages, pure first:

- ``access``: who may do what: the trusted-proxy decision on the peer address, roles,
  CSRF tokens, safe redirects (pure).
- ``sessions``: signed-in sessions, in the process (pure, time given).
- ``throttle``: failed logins rate limited per user and per address (pure, time given).
- ``views``: what each page shows, as frozen rows; masking and cleaning (pure).
- ``passwords``: Argon2id hashes (``monitor console hash-password``) and their check.
- ``server``: the aiohttp application: ``ConsoleServer`` (``start``/``stop``), its handlers
  and templates; the daemon (``monitor.app.daemon``) starts and stops it.

The console has no business logic of its own: it reads the stores of ``ingest``, ``stories``
and ``deliver`` and calls their named operations (re-queue a dead letter, add or end a
silence), exactly as the CLI does.
"""
