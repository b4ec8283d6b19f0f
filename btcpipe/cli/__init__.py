"""The ``btcpipe`` command line: the only place that wires concrete adapters."""
