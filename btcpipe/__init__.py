"""btcpipe: short-horizon BTCUSDT prediction, trained offline and served live from the same feature code."""

__version__ = "0.1.0"
