"""Ingestion: a feed's bytes become deduplicated, matched items, one poll at a time.

The stages, in the order an item meets them::

    schedule   when to poll a feed next, and whether it is healthy (pure)
    fetch      HTTP and file: feeds, conditional GET, per-host turns (I/O)
    parse      bytes -> entries: a fast path for plain RSS/Atom, feedparser otherwise
    scrape     pages without a feed, by CSS selectors
    markup     HTML -> plain text, keeping sentence and image-alt boundaries (pure)
    normalize  entries -> ``Item`` (clean text, canonical links, dates) (pure)
    dedup      identity keys across feeds (pure)
    prepare    parse + normalize + dedup keys + match, as one call a parser process runs
    poll       one feed's pass: fetch, prepare, record, queue (``poll_once``)
    state      ingest state in Redis: seen items and each feed's state (I/O)
    pool/      parser processes, so parsing and matching use every core

This package is a face: it imports nothing, so a parser process loads only what it uses.
"""
