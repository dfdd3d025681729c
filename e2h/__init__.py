"""e2h: easy-to-hard generalization (Sun et al., 2024) on Lightning."""

__version__ = "0.1.0"
