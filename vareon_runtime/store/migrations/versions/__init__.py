"""The kernel's revision files (branch ``kernel``)."""
