"""Sample inputs several test modules share."""

KZ_TUNGSTEN_RULES = """\
rules:
  - id: kz-tungsten
    title: Kazakhstan tungsten
    severity: high
    match:
      all: [Kazakhstan, tungsten]
"""
"""One rule that matches items naming both Kazakhstan and tungsten."""
