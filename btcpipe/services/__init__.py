"""The long-running services and jobs, composition only: ``ingest``, ``process``, ``infer``, ``backfill`` and
``replay``. Each takes ports; the CLI chooses the adapters."""
