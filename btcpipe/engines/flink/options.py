"""The Flink job's command line (no pyflink here, so btcpipe's venv and the deploy checks can read it)."""

from __future__ import annotations

import argparse
import os


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m btcpipe.engines.flink.job",
                                description="btcpipe's live features as a PyFlink job")
    p.add_argument("--input", required=True, help="a file of base64 payload lines, or a directory (with --follow)")
    p.add_argument("--output", required=True, help="feature rows, one JSON line each")
    p.add_argument("--params", required=True, help="feature params JSON")
    p.add_argument("--follow", action="store_true", help="monitor --input for new files; run until stopped")
    p.add_argument("--monitor-ms", type=int, default=200)
    p.add_argument("--out-of-orderness-ms", type=int, default=0)
    p.add_argument("--parallelism", type=int, default=1)
    p.add_argument("--checkpoint-dir", default="")
    p.add_argument("--checkpoint-ms", type=int, default=0)
    p.add_argument("--restart-attempts", type=int, default=3)
    p.add_argument("--redis-url", default=os.environ.get("BTCPIPE_REDIS_URL", ""),
                   help="put rows in this Redis online store too (default: $BTCPIPE_REDIS_URL)")
    p.add_argument("--fail-after", type=int, default=0, help="(tests) fail once after this many payloads")
    p.add_argument("--fail-marker", default="")
    return p.parse_args(argv)
