"""Process infrastructure the services and commands share: clocks, logging, Prometheus metrics, CloudWatch EMF,
the Redis connection options, and the dev servers (redis-server, moto_server) tests and ``run --services`` start."""
