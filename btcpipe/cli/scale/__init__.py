"""Commands for history at scale (docs/SCALE.md): ``btcpipe cluster`` (a loopback Ray cluster) and ``btcpipe
feast`` (an optional Feast repo over the lake)."""
