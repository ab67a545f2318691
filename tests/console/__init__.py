"""The web console's tests (a package, so its conftest has a name of its own)."""
