"""Rendering: a match, or a digest of matches, as each medium shows it.  All pure.

The modules, lowest first (each imports only those above it)::

    strings       one-line helpers every medium shares: clean_line, clip, format_time,
                  safe_link, provenance lines
    quote         the sentence around a hit, hits marked (Quote, find_sentence, quote)
    digest        the Digest record (one window's matches for one channel)
    english       English beside a foreign alert: its translation's lines, the gloss, and
                  which texts a translation service is asked for (source_texts)
    slack_blocks  Slack Block Kit: one alert, a burst (GROUP_MAX), a digest
    email_mime    email subject, HTML/text parts and message, stable Message-IDs, digest email
    webhook_json  the generic webhook's JSON for an alert and a digest
    apprise_text  an Apprise title and body (text or Markdown): an alert, a burst, a digest
    plain         console text for an alert and a digest

A digest is rendered by its medium's module, next to the single alert it resembles.  Import
from the module that holds a name; this package re-exports nothing.
"""
