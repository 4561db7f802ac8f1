"""Myntrix's revision files (branch ``myntrix``), found by the store through the
``vareon.migrations`` entry point ``myntrix``."""
