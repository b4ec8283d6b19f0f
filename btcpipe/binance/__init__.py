"""Binance market data as btcpipe reads it: the REST and daily-dump clients, the SBE codec (from the official
schema), the WebSocket stream client, JSON messages, request weights, recordings and the local order book."""
