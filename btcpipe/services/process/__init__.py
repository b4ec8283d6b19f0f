"""The live processor: bus → the one symbol feature state per symbol → online store, ``features-1s`` and silver."""
