"""The bus and store wire format, pure: the Avro codec of domain records and the columnar trade and best bid/ask
batches (hand-written numpy readers and writers of the same Avro schemas). Bus, store and archive all use it."""
