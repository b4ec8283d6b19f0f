"""Partition runners: the same per-partition work (a day's feature build, a day's dump backfill) run one
after another, on threads, or spread over a Ray cluster. The runners add no arithmetic: every task calls
the unchanged ``features.day_build.build_day`` or ``services``' backfill, so the parts (named by their
content hash) are byte for byte the same whichever runner wrote them."""
