"""Live features on Apache Flink: the processor's symbol state inside a PyFlink DataStream job.

``elements`` (no pyflink) decodes bus payloads into keyed elements and applies them to a
``SymbolFeatureState``; ``job`` builds and runs the PyFlink job (it imports pyflink, so it only runs in
``.venv-flink``); ``launch`` starts that job as a subprocess from btcpipe's own venv.
"""
