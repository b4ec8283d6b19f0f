"""Start the Flink job from btcpipe's own venv: pyflink lives in ``.venv-flink`` (its pins differ from ours).

``flink_python()`` finds that venv's interpreter (``BTCPIPE_FLINK_PYTHON`` wins, else ``.venv-flink`` in the
current directory or the repository); ``job_command`` builds the command line; ``run_job`` runs a bounded
job to the end. A streaming (``--follow``) job is started with ``start_job`` and stopped by the caller.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from btcpipe.domain.errors import BtcpipeError, ConfigError
from btcpipe.features.spec import FeatureParams

REPO = Path(__file__).resolve().parents[3]
FLINK_VENV = ".venv-flink"


def flink_python() -> Path:
    """The interpreter of the Flink venv; ``ConfigError`` (saying ``make flink-venv``) when there is none."""
    env = os.environ.get("BTCPIPE_FLINK_PYTHON")
    here = [Path.cwd() / FLINK_VENV / "bin" / "python", REPO / FLINK_VENV / "bin" / "python"]
    candidates = [Path(env)] if env else here
    for c in candidates:
        if c.exists() and any(c.parent.parent.glob("lib/python*/site-packages/pyflink")):
            return c
    raise ConfigError(f"no Flink venv with pyflink at {', '.join(map(str, candidates))}: run `make flink-venv` "
                      "(or set BTCPIPE_FLINK_PYTHON to its python)")


@dataclass(frozen=True, slots=True)
class JobOptions:
    """What the Flink job is asked to do (see ``python -m btcpipe.engines.flink.job --help``)."""

    input: Path
    output: Path
    params: FeatureParams
    work_dir: Path  # params file, checkpoints, logs
    follow: bool = False
    out_of_orderness_ms: int = 0
    parallelism: int = 1
    checkpoint_ms: int = 0
    restart_attempts: int = 3
    redis_url: str = ""
    fail_after: int = 0


def job_command(o: JobOptions, python: Path | None = None) -> list[str]:
    o.work_dir.mkdir(parents=True, exist_ok=True)
    params_file = o.work_dir / "params.json"
    params_file.write_text(json.dumps(o.params.to_json()))
    cmd = [str(python or flink_python()), "-m", "btcpipe.engines.flink.job", "--input", str(o.input),
           "--output", str(o.output), "--params", str(params_file),
           "--out-of-orderness-ms", str(o.out_of_orderness_ms), "--parallelism", str(o.parallelism),
           "--restart-attempts", str(o.restart_attempts)]
    if o.follow:
        cmd.append("--follow")
    if o.checkpoint_ms:
        cmd += ["--checkpoint-ms", str(o.checkpoint_ms), "--checkpoint-dir", str(o.work_dir / "checkpoints")]
    if o.redis_url:
        cmd += ["--redis-url", o.redis_url]
    if o.fail_after:
        cmd += ["--fail-after", str(o.fail_after), "--fail-marker", str(o.work_dir / "failed-once")]
    return cmd


def _env() -> dict[str, str]:
    # the job imports this btcpipe (a worktree or an install), whichever venv runs it
    root = str(REPO)
    path = os.environ.get("PYTHONPATH", "")
    return os.environ | {"PYTHONPATH": root + (os.pathsep + path if path else "")}


def start_job(o: JobOptions, python: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the job in its own process group (the JVM is its child); its log goes to ``work_dir/job.log``."""
    cmd = job_command(o, python)
    log = (o.work_dir / "job.log").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def run_job(o: JobOptions, python: Path | None = None, timeout_s: float = 1800.0) -> dict[str, object]:
    """Run a bounded job to its end; returns its summary (``rows``, ``seconds``). ``BtcpipeError`` if it fails."""
    proc = start_job(o, python)
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 15)
        proc.wait()
        raise BtcpipeError(f"the Flink job did not finish in {timeout_s:.0f} s (log: {o.work_dir / 'job.log'})"
                           ) from None
    log = (o.work_dir / "job.log").read_text(errors="replace")
    if code != 0:
        tail = "\n".join(log.splitlines()[-15:])
        raise BtcpipeError(f"the Flink job failed (exit {code}); log {o.work_dir / 'job.log'}:\n{tail}")
    last = [line for line in log.splitlines() if line.startswith("{")]
    summary: dict[str, object] = json.loads(last[-1]) if last else {}
    return summary
