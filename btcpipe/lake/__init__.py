"""The Parquet lake: bronze (raw payload + typed parts), silver and gold, on a local directory or S3.

``store`` (the ``ObjectStore`` port, local and S3 adapters, ``open_store``), ``lake`` (``Lake``),
``manifest`` (per-partition manifests), ``keys`` (the layout), ``check`` (the completeness report),
``schemas`` (Arrow schemas and exact decimal conversions).
"""
