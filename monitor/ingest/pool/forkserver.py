"""What the parser processes' fork server loads before it forks any of them.

Every parser process is forked from this server and shares its pages until it writes to them.
Python's cyclic garbage collector writes to every object it examines, so a parser's first
collection would copy every page of the imported modules into the parser.  Freezing what the
server holds (``gc.freeze``) moves those objects out of the collector's reach: they are never
collected (they live as long as the process anyway), and their pages stay shared.  Only the
fork server imports this module; the daemon must not freeze its own objects.
"""

import gc

import monitor.ingest.pool.process  # noqa: F401  (imported for its side effect: the parsing modules)

gc.freeze()
