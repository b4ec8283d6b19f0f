"""The local exchange's WebSocket side: routes, the hub that fans a timeline out to connections, the
timeline of events per stream, JSON/SBE formats, and the API-key check of the SBE endpoint."""
