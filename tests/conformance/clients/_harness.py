"""Shared by the client scripts (run in the clients' venv, without btcpipe): record each call's outcome as JSON.

Every script prints one JSON object on stdout: ``{call name: {"ok": result} | {"error": "Type: message"}}``.
A failing call is recorded, never fatal, so the test reports the whole client x call matrix at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any


def plain(value: Any) -> Any:
    """JSON-able form of what a client returns (dicts, lists, pydantic models of the official SDK)."""
    if hasattr(value, "actual_instance"):  # the SDK's oneOf wrappers
        return plain(value.actual_instance)
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(by_alias=True, mode="json", exclude_none=True))
    if isinstance(value, dict) and "actual_instance" in value:  # the same wrappers, nested and already dumped
        return plain(value["actual_instance"])
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if k != "additional_properties"}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class Results:
    def __init__(self) -> None:
        self.calls: dict[str, Any] = {}

    def call(self, name: str, fn: Callable[[], Any]) -> None:
        try:
            self.calls[name] = {"ok": plain(fn())}
        except Exception as exc:
            self.calls[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}

    async def acall(self, name: str, fn: Callable[[], Awaitable[Any]]) -> None:
        try:
            self.calls[name] = {"ok": plain(await fn())}
        except Exception as exc:
            self.calls[name] = {"error": f"{type(exc).__name__}: {exc}"[:500]}

    def emit(self) -> None:
        json.dump(self.calls, sys.stdout, default=str)
        sys.stdout.flush()


class Collector:
    """Messages per stream until each has ``need`` of them (or the deadline passes)."""

    def __init__(self, need: dict[str, int]) -> None:
        self.need = need
        self.got: dict[str, list[Any]] = {k: [] for k in need}
        self.done = asyncio.Event()

    def add(self, name: str, message: Any) -> None:
        bucket = self.got.setdefault(name, [])
        if len(bucket) < self.need.get(name, 0):
            bucket.append(plain(message))
        if all(len(self.got[k]) >= n for k, n in self.need.items()):
            self.done.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout)

    def into(self, results: Results) -> None:
        for name, messages in self.got.items():
            ok = len(messages) >= self.need[name]
            results.calls[f"stream:{name}"] = (
                {"ok": messages} if ok else {"error": f"only {len(messages)} of {self.need[name]} messages",
                                             "partial": messages}
            )
