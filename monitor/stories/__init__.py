"""Stories: items reporting one event, clustered across sources and languages, and volume rules.

The public API::

    Extractor().features(item) -> Features       fingerprint and evidence of one item (pure)
    Extractor().same_event(a, b) -> float         the pairwise decision, > 0 for one event
    choose_story(extractor, features, candidates, now, window) -> story id | None   (pure)
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

``cluster``, ``lexicon`` and ``trends`` are the pure core, ``model`` the frozen data,
``store`` and ``volume`` the I/O.
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
