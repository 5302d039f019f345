"""clvtier: customer value analysis and tiering."""

__version__ = "0.1.0"
