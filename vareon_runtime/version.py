"""The runtime's version (one place; the package's face and ``vareon --version`` show it)."""

__all__ = ["__version__"]

__version__ = "0.1.0"
