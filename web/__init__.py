"""web layer of Vareon Runtime (see docs/architecture.md)."""
