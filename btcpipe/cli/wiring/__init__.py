"""Concrete adapters picked from configuration and options: the config loader, the live commands' bus/store/
positions, and ``btcpipe run``'s market, exchange, lake, bus and store. Only the CLI imports this."""
