"""The live ingestor: WebSocket market data → decode, gap checks and fills, order book → bronze and bus."""
