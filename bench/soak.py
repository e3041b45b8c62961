"""Benchmark: `clickstream up` under steady load for a while: each part's CPU and memory, and
each query's lag, sampled as it runs, judged against the soak's targets.

    .venv/bin/python bench/soak.py [--rate 500] [--shop-rate 500] [--minutes 30]
        [--warmup-minutes 5] [--sample-s 15] [--max-growth-mb-h 50] [--max-lag N]
        [--jobs NAME,...] [--start-timeout-s 600] [--set CLICKSTREAM_NAME=VALUE]...
        [--markdown] [--smoke]

Starts `clickstream up --rate R --shop-rate S` in a fresh data folder on free ports and waits
until every streaming query has committed its first batch (the jobs process says how many it
started; a query still without a batch after ``--start-timeout-s`` ends the run, named). From
then on, for ``--minutes``, every ``--sample-s`` seconds it reads, for each part (broker,
collector, jobs with Spark's JVM and Python workers, dashboard, web-sim, shop-sim), the CPU
time and resident memory of its process tree from /proc, and each streaming query's lag
(records in Kafka it has not committed yet, from its checkpoint and the topics' end offsets, as
`clickstream status` does). Samples taken during the warm-up are not used for the figures.
Printed: per part, average cores, memory at the end of the warm-up and at the end, and its
growth in MB per hour (least squares over the samples after warm-up); per query, the largest
and the last lag, and whether lag grew (the last third's median against the first third's).
Then `up` is stopped with SIGINT, and the verdict printed: no part may grow more than
``--max-growth-mb-h`` after the warm-up, no query's lag may grow (nor exceed ``--max-lag`` when
given), and no part may have been restarted by `up` (a restart resets a part's memory, so its
growth would mean nothing); the exit code is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from common import JARS_DIR, QueriesReady, console, free_port, options, print_table
from sides import Side, this_side

SMOKE = {
    "rate": 20,
    "shop_rate": 20,
    "minutes": 0.45,
    "warmup_minutes": 0.15,
    "sample_s": 3,
    "jobs": "shop",
    "start_timeout_s": 300,
}
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")
PARTS = {  # part: what its root process's command line holds
    "broker": "kafka.Kafka",
    "collector": "clickstream collector",
    "jobs": "clickstream jobs run",
    "dashboard": "clickstream dashboard",
    "web-sim": "clickstream simulate web",
    "shop-sim": "clickstream simulate shop",
}


@dataclass
class Proc:
    pid: int
    parent: int
    ticks: int
    rss: int
    cmdline: str


def processes() -> dict[int, Proc]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry.name)
        found[pid] = Proc(pid, int(stat[1]), int(stat[11]) + int(stat[12]), int(stat[21]), cmd)
    return found


def part_usage(root: int, parts: Mapping[str, str] = PARTS) -> dict[str, tuple[float, float]]:
    """part -> (CPU seconds, RSS MB) of its process tree, for the parts under ``root`` (and
    ``root`` itself); ``parts``: part -> what its root process's command line holds."""
    procs = processes()
    children: dict[int, list[int]] = {}
    for proc in procs.values():
        children.setdefault(proc.parent, []).append(proc.pid)

    def tree(pid: int) -> list[int]:
        out, stack = [], [pid]
        while stack:
            pid = stack.pop()
            out.append(pid)
            stack.extend(children.get(pid, []))
        return out

    usage: dict[str, tuple[float, float]] = {}
    for pid in tree(root):
        if pid not in procs:  # ``root`` has exited
            continue
        proc = procs[pid]
        for part, marker in parts.items():
            if marker in proc.cmdline and "clickstream.watchdog" not in proc.cmdline:
                members = [procs[p] for p in tree(pid) if p in procs]
                cpu = sum(p.ticks for p in members) / TICK
                rss = sum(p.rss for p in members) * PAGE / 1e6
                usage.setdefault(part, (cpu, rss))
    return usage


def lags(env: dict[str, str]) -> dict[str, int | None]:
    from clickstream.kafka.admin import describe_topics
    from clickstream.settings import load_settings
    from clickstream.status import query_lags

    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("CLICKSTREAM")})
    ends = {(t.name, p): end for t in describe_topics(settings) for p, end in t.ends.items()}
    return {f"{q.job}.{q.query}": q.lag for q in query_lags(settings, ends)}


def restarts(data: Path) -> dict[str, int]:
    """part -> times `up` restarted it so far (from the state file it keeps for `status`)."""
    from clickstream.supervisor import read_state

    state = read_state(data)
    return {part.name: part.restarts for part in state.parts} if state else {}


@dataclass
class Samples:
    times: list[float] = field(default_factory=list)
    usage: list[dict[str, tuple[float, float]]] = field(default_factory=list)
    lags: list[dict[str, int | None]] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    said: list[str] = field(default_factory=list)
    """What `up` printed about its parts (restarts, health)."""


def fresh_up_env(side: Side, data: str, sets: Mapping[str, str]) -> dict[str, str]:
    """The environment of an `up` in the data folder ``data`` with every port free (the
    broker's, the collector's, the dashboard's, the bookstore's), and ``sets`` on top."""
    env = side.env(
        CLICKSTREAM_DATA_DIR=data,
        CLICKSTREAM_JARS_DIR=str(JARS_DIR),
        CLICKSTREAM_BROKER_PORT=str(free_port()),
        CLICKSTREAM_BROKER_CONTROLLER_PORT=str(free_port()),
        CLICKSTREAM_COLLECTOR_PORT=str(free_port()),
        CLICKSTREAM_DASHBOARD_PORT=str(free_port()),
        CLICKSTREAM_BOOKSTORE_PORT=str(free_port()),
        **sets,
    )
    env["CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] = f"127.0.0.1:{env['CLICKSTREAM_BROKER_PORT']}"
    return env


def lag_grew(lags: Sequence[int]) -> bool:
    """Whether a query's lag grew over ``lags`` (its samples in order): the last third's median
    above twice the first third's plus 1,000 records."""
    third = max(1, len(lags) // 3)
    return statistics.median(lags[-third:]) > 2 * statistics.median(lags[:third]) + 1000


def slope_per_hour(times: list[float], values: list[float]) -> float:
    if len(times) < 2:
        return float("nan")
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    num = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True))
    den = sum((t - mean_t) ** 2 for t in times)
    return num / den * 3600 if den else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--shop-rate", type=float, default=500)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup-minutes", type=float, default=5)
    parser.add_argument("--sample-s", type=float, default=15)
    parser.add_argument("--max-growth-mb-h", type=float, default=50.0)
    parser.add_argument("--max-lag", type=int, help="largest lag allowed after the warm-up")
    parser.add_argument("--jobs", help="up --jobs: run only these jobs (default: all)")
    parser.add_argument(
        "--start-timeout-s", type=float, default=600, help="for every query's first batch"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="CLICKSTREAM_NAME=VALUE", help="a setting"
    )
    args = options(parser, SMOKE)
    settings = dict(item.split("=", 1) for item in args.set)
    if any(not name.startswith("CLICKSTREAM_") for name in settings):
        parser.error("--set wants CLICKSTREAM_NAME=VALUE")
    side = this_side()
    samples = Samples()
    with tempfile.TemporaryDirectory(prefix="clickstream-soak-") as data:
        env = fresh_up_env(side, data, settings)
        command = [side.python, "-m", "clickstream", "up", f"--rate={args.rate:g}"]
        command.append(f"--shop-rate={args.shop_rate:g}")
        if args.jobs:
            command.append(f"--jobs={args.jobs}")
        up_env = {k: v for k, v in env.items() if k != "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"}
        log = open(Path(data) / "up.log", "wb")  # noqa: SIM115 - closed below
        up = subprocess.Popen(command, env=up_env, stdout=log, stderr=log)
        started = time.monotonic()
        queries = QueriesReady(Path(data))
        ready: float | None = None  # when every query had committed a batch
        lag: dict[str, int | None] = {}
        try:
            while up.poll() is None:
                time.sleep(args.sample_s)
                now = time.monotonic()
                if ready is not None and now - ready > args.minutes * 60:
                    break
                if ready is None and now - started > args.start_timeout_s:
                    waiting = ", ".join(queries.waiting(lag)) or "no query"
                    console.print(
                        f"[red]not started within {args.start_timeout_s:g} s:[/] {waiting}"
                        " committed no batch"
                    )
                    break
                try:
                    lag = lags(env)
                except Exception as exc:  # Kafka not up yet
                    console.print(f"{now - started:6.0f} s: no lag yet ({type(exc).__name__})")
                    continue
                if ready is None:
                    if not queries.check(lag):
                        console.print(f"{now - started:6.0f} s: starting; lag {lag}")
                        continue
                    ready = now
                    console.print(
                        f"{now - started:6.0f} s: all {len(queries.seen)} queries committed a"
                        " batch: the warm-up starts"
                    )
                usage = part_usage(up.pid)
                samples.times.append(now - ready)
                samples.usage.append(usage)
                samples.lags.append(lag)
                samples.restarts = restarts(Path(data)) or samples.restarts
                rss = ", ".join(f"{p} {m:.0f}" for p, (_, m) in sorted(usage.items()))
                console.print(f"{now - started:6.0f} s: lag {lag}; MB {rss}")
        finally:
            up.send_signal(signal.SIGINT)
            up.wait(120)
            log.close()
        output = (Path(data) / "up.log").read_text(errors="replace")
        samples.said = [
            line
            for line in output.splitlines()
            if any(word in line for word in ("restart", "not healthy", "exited", "killed"))
        ]
        if up.returncode not in (0, None) and not samples.times:
            console.print(output[-3000:])
            return 1
    return 0 if report(samples, args) else 1


def report(samples: Samples, args: argparse.Namespace) -> bool:
    """Print the tables and the verdict; True when every target is met."""
    warm = args.warmup_minutes * 60
    keep = [i for i, t in enumerate(samples.times) if t >= warm]
    if len(keep) < 2:
        console.print("[red]not enough samples after the warm-up")
        return False
    missed: list[str] = []
    first, last = keep[0], keep[-1]
    span = samples.times[last] - samples.times[first]
    heads = ("part", "cores", "MB after warm-up", "MB at the end", "growth MB/h")
    rows = []
    for part in PARTS:
        if part not in samples.usage[first] or part not in samples.usage[last]:
            continue
        cpu0, rss0 = samples.usage[first][part]
        cpu1, rss1 = samples.usage[last][part]
        times = [samples.times[i] for i in keep if part in samples.usage[i]]
        values = [samples.usage[i][part][1] for i in keep if part in samples.usage[i]]
        growth = slope_per_hour(times, values)
        if not growth <= args.max_growth_mb_h:  # NaN misses it too
            missed.append(f"{part} grew {growth:+.0f} MB/h (target: {args.max_growth_mb_h:g})")
        rows.append((part, f"{(cpu1 - cpu0) / span:.2f}", f"{rss0:.0f}", f"{rss1:.0f}",
                     f"{growth:+.0f}"))  # fmt: skip
    title = f"up --rate {args.rate:g} --shop-rate {args.shop_rate:g}, {span / 60:.1f} min measured"
    if args.set:
        title += f" ({', '.join(args.set)})"
    print_table(heads, rows, markdown=args.markdown, title=title)
    queries = sorted({q for i in keep for q in samples.lags[i]})
    lag_heads = ("query", "largest lag", "last lag", "lag grew")
    lag_rows: list[tuple[str, ...]] = []
    for query in queries:
        known = [v for i in keep if (v := samples.lags[i].get(query)) is not None]
        if not known:
            continue
        grew = lag_grew(known)
        if grew:
            missed.append(f"{query}'s lag grew (to {known[-1]:,})")
        if args.max_lag is not None and max(known) > args.max_lag:
            missed.append(f"{query}'s lag reached {max(known):,} (target: {args.max_lag:,})")
        lag_rows.append((query, f"{max(known):,}", f"{known[-1]:,}", "yes" if grew else "no"))
    if args.markdown:
        print()
    print_table(lag_heads, lag_rows, markdown=args.markdown, left=("query", "lag grew"))
    missed.extend(f"up restarted {part} {n} time(s)" for part, n in samples.restarts.items() if n)
    for line in samples.said:
        console.print(f"up: {line}")
    if missed:
        Console().print("[red]targets missed:[/] " + "; ".join(missed))
    else:
        Console().print(
            f"[green]targets met:[/] no part grew more than {args.max_growth_mb_h:g} MB/h after "
            "the warm-up, every query's lag stayed bounded, no part was restarted"
        )
    return not missed


if __name__ == "__main__":
    sys.exit(main())
