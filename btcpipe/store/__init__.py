"""The online store: a port (``port.OnlineStore``) with an in-process adapter (``memory``) and a Redis
adapter (``redis_store``); ``redis_connection`` holds the Redis options shared with the Redis bus."""

from btcpipe.store.port import DEFAULT_TTL_S, OnlineStore, feature_key, latest_key

__all__ = ["DEFAULT_TTL_S", "OnlineStore", "feature_key", "latest_key"]
