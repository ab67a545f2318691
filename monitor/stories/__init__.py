"""Stories: items reporting one event, clustered across sources and languages, and volume rules.

The public API::

    Extractor().features(item) -> Features       fingerprint and evidence of one item (pure)
    Extractor().same_event(a, b) -> float         the pairwise decision, > 0 for one event
    choose_story(extractor, features, candidates, window) -> story id | None   (pure; the
                                                  window is between publication times)
    MemoryStories                                 in-memory clustering (tests, benchmarks)
    StoryStore(client, keys).assign(item, now)    the Redis shell: atomic across replicas
    StoryStore.settle(story, item, rules) -> Settlement   each rule held, alerting or quiet,
                                                  escalating: atomic across replicas
    follow_up_reason(update, policy), satisfied(gate, owners, official), provenance(items)
                                                  the pure decisions a settlement mirrors
    source_metas(settings.stories)                provenance of the feeds from the config
    volume_fires(rule, counts), VolumeStore.observe(rule, now, add, alert)   volume trends:
                                                  count, fire once per burst, queue the alert
    VolumeStore.first_mentions(trend, entities, alerts)   entities seen for the first time
    trends.volume_rule(trend), trend_match(...), mentioned(...)   trends as alerts (pure)
    settle.settle_batch(batch, rules, stories, policy, now) -> [Queued]   a poll's batch of
                                                  records put into stories, oldest first:
                                                  what to queue with each
    settle.count_trends(records, rules, volume, now)   a poll's new matches counted for
                                                  the volume trends and first mentions
    settle.by_publication(batch)                  the order stories are assigned and queued in

``cluster``, ``lexicon``, ``story`` and ``trends`` are the pure core, ``store`` and ``volume``
the I/O, ``settle`` the step a poll (``monitor.ingest.poll``) calls between matching and the
queue; it reads records through a protocol, so stories never import ingest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitor.stories.story import SourceMeta

if TYPE_CHECKING:
    from monitor.settings import StoriesSettings


def source_metas(settings: StoriesSettings) -> dict[str, SourceMeta]:
    """The config's ``stories.sources`` as the store wants them: feed name -> provenance."""
    return {
        name: SourceMeta(name, kind=meta.kind, country=meta.country, owner=meta.owner)
        for name, meta in settings.sources.items()
    }
