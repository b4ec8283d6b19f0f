"""The market simulator (order flow, book, trades, depth) and its oracle — the best possible predictor of its
own 10-s label — plus small hand-written tapes for tests and examples."""
