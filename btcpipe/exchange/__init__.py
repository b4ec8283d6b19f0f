"""The local Binance-compatible exchange: serves a market tape over REST (weights, 429/418, faults), daily dumps
and SBE/JSON WebSockets on loopback, on a clock that makes the tape history or live."""
