"""HTTP load for the collector benchmark: wrk (else an asyncio + httpx generator) posting one
body over and over, and the CPU each process tree used meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import ssl
import subprocess
import tempfile
import time
from argparse import Namespace
from pathlib import Path

import httpx

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
HEADERS = {"content-type": "application/json; charset=UTF-8", "user-agent": CHROME}
LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "%(type)s"
wrk.headers["User-Agent"] = "%(agent)s"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok, bad, sent = 0, 0, 0; req = wrk.format() end
function request() sent = sent + 1; return req end
function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local o, b, s = 0, 0, -1  -- wrk calls request() once more, to check the script
  for _, t in ipairs(threads) do o, b, s = o + t:get("ok"), b + t:get("bad"), s + t:get("sent") end
  local e = summary.errors
  io.write(string.format('BENCH {"ok": %%d, "bad": %%d, "sent": %%d, "seconds": %%.6f, '
    .. '"p50": %%.3f, "p99": %%.3f, "errors": %%d}\\n', o, b, s, summary.duration / 1e6,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.timeout))
end
"""


def cpu_now(roots: list[int]) -> list[float]:
    """CPU seconds so far: each root's process tree, us + waited children, the whole machine."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, int]] = {}  # pid: (parent, ticks)
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            procs[int(entry.name)] = (int(stat[1]), int(stat[11]) + int(stat[12]))
    result = []
    for root in roots:
        tree = {root}
        while grown := {pid for pid, (parent, _) in procs.items() if parent in tree} - tree:
            tree |= grown
        result.append(sum(procs[pid][1] for pid in tree if pid in procs) / tick)
    us = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    result.append(sum(usage.ru_utime + usage.ru_stime for usage in us))
    machine = [int(n) for n in Path("/proc/stat").read_text().split()[1:9]]
    result.append((sum(machine) - machine[3] - machine[4]) / tick)  # all but idle and iowait
    return result


def run_wrk(url: str, body: bytes, seconds: float, args: Namespace) -> dict[str, float]:
    lua = LUA % {"body": body.decode(), "type": HEADERS["content-type"], "agent": CHROME}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", dir=args.scratch) as script:
        script.write(lua)
        script.flush()
        command = ["wrk", "--latency", "-t", str(args.threads), "-c", str(args.connections)]
        command += ["-d", f"{seconds:g}s", "--timeout", "10s", "-s", script.name, url]
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            return dict(json.loads(line[6:]))
    raise RuntimeError(f"wrk failed: {out.stdout}\n{out.stderr}")


async def run_httpx(url: str, body: bytes, seconds: float, connections: int) -> dict[str, float]:
    """The fallback generator: one client per connection (httpcore's pool is costly when shared)."""
    latencies: list[float] = []
    counts = {"ok": 0, "bad": 0, "errors": 0}
    deadline = time.perf_counter() + seconds
    tls = ssl.create_default_context()  # unused on http://, but costly to make per client

    async def worker() -> None:
        async with httpx.AsyncClient(headers=HEADERS, timeout=10, verify=tls) as client:
            while time.perf_counter() < deadline and len(latencies) < 5_000_000:
                start = time.perf_counter()
                try:
                    response = await client.post(url, content=body)
                except httpx.HTTPError:
                    counts["errors"] += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                counts["ok" if response.is_success else "bad"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def at(q: float) -> float:
        return latencies[int(q * (len(latencies) - 1))] if latencies else 0.0

    sent = counts["ok"] + counts["bad"]  # every request is waited for: none left in flight
    return {**counts, "sent": sent, "seconds": elapsed, "p50": at(0.5), "p99": at(0.99)}


def load(url: str, body: bytes, seconds: float, args: Namespace) -> dict[str, float]:
    if args.wrk:
        return run_wrk(url, body, seconds, args)
    return asyncio.run(run_httpx(url, body, seconds, args.connections))
