"""monitor: watch news feeds for the geopolitical events analysts care about and alert them."""

__version__ = "0.1.0"
