"""The pure core every layer shares: records, time (int64 µs, UTC), exact decimals, columnar tapes, feature
rows and predictions, forecast scores, retry backoff and the one error tree. No IO, no wall clock."""
