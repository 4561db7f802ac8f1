"""Notes: the smallest domain built on the kit, registered by the test suite itself (a fixture,
not a product feature, not shipped). It proves the recipe in docs/domains.md: a new domain is
its folder (this package), its web module (``notes_web``), its tests and its entry points, and
touches nothing else."""
