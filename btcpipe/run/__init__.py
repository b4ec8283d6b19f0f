"""``btcpipe run``: the whole pipeline on one machine — orchestration of the stages, the placed market, the live
stage, what it measures, the terminal view, the report, and the end-to-end parity check."""
