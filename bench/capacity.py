"""Benchmark: the whole stack's capacity as one number: the highest rate at which `clickstream
up` keeps every streaming query's lag bounded for 5 minutes on this machine.

    .venv/bin/python bench/capacity.py [--start 1000] [--web-share 0.5] [--warmup-s 60]
        [--hold-s 300] [--sample-s 15] [--max-lag-s 30] [--precision 0.1] [--max-steps 10]
        [--web-per-process 600] [--shop-per-process 5000] [--start-timeout 300]
        [--jobs NAME,...] [--set CLICKSTREAM_NAME=VALUE]... [--markdown] [--smoke]

**A step** runs `clickstream up` in a fresh data folder on free ports (as bench/soak.py) at a
total rate R: ``--web-share`` of R from the web simulator (through the collector, over HTTP),
the rest from the shop simulator (straight to Kafka); the other scenarios' simulators run at
their demo rates (bookstore 5/s, songs 5/s, users 2/s with 1-10 page events each: `up` takes no
rate for them). The load generators are processes of their own: a simulator process is asked
for at most ``--web-per-process`` (``--shop-per-process``) events/s; `up`'s own web-sim and
shop-sim take the first share, and more `clickstream simulate web|shop --endless` processes,
started once `up` says it is up, take the rest (``--jobs`` runs only those Spark jobs, `up
--jobs`: a capacity for them alone, which the capacity line names). The hold starts
``--warmup-s`` after the first data point (the first micro-batch a query commits), and not
before every query has committed a batch (the queries start one after another; the jobs process
says in its log when it has started them all); a step that does not get there within
``--start-timeout`` did not hold. For ``--hold-s`` seconds it reads every query's lag (records
in Kafka it has not committed, as `clickstream status` does) every ``--sample-s``, and the CPU
time of each part's process tree at the start and the end of the hold (bench/soak.py's
sampling); then it stops `up` and the extra generators.

**Held** means, over the hold:

- every query committed a batch, its lag did not grow (bench/soak.py's rule: the last third's
  median at most twice the first third's plus 1,000 records), and in the last third of the hold
  it stayed within ``--max-lag-s`` seconds of the asked rate (R x max-lag-s records). The bound
  leaves out the first two thirds: the jobs start from the earliest offsets and their queries
  one after the other, so a query may still be draining what came before it started;
- the asked rate was delivered: the end offsets of the web topics (pageviews, pings, custom
  events) and of the shop topic each grew by at least 90 % of their asked rate. A step short of
  it was not a measure of the stack at R: the note says whether a generator process used its
  whole core (generator-bound), the machine's cores were all busy, or neither (the collector
  or the broker did not take the rate);
- `up` restarted no part.

**The search** doubles R from ``--start`` while steps hold (halves it while none has held),
then bisects between the highest rate that held and the lowest that did not, until they are
within ``--precision`` of the held rate or ``--max-steps`` steps have run. Each step takes about
the start, the warm-up and the hold: 7 minutes at the defaults.

**Printed**: a row per step (rate asked and delivered; held; the query that fell behind first,
the one whose lag rose above its bound earliest and stayed there, where the bound is the
smaller of the max-lag bound and twice its lag early in the hold plus 1,000; average cores
over the hold of each part of the stack, of each load generator, and of the whole machine,
whatever runs on it); then the capacity: the highest rate that held, "at least" when no rate
above it failed, or when the lowest one above it failed only because its rate did not reach
Kafka while a generator process used its whole core or the machine's cores were all busy. With
it: the query that fell behind first above it, the stack's and the generators' cores at that
rate with each generator's cores per 1,000 events/s, and a note when the generators used more
CPU than the stack (on one machine they take cores the stack would otherwise have). The exit
code is 0 (a capacity is a measure, not a target), 1 when a step could not run (`up` exited),
130 when interrupted; Ctrl-C or SIGTERM stops the `up` of the step first.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import FrameType

from clickstream.children import spawn, stop
from clickstream.errors import KafkaUnavailableError
from clickstream.kafka.admin import describe_topics
from clickstream.settings import Settings, load_settings
from clickstream.stack import Rates
from common import QueriesReady, console, options, print_table
from sides import this_side
from soak import PARTS, TICK, fresh_up_env, lag_grew, lags, part_usage, restarts

SMOKE: dict[str, object] = {
    "start": 200,
    "warmup_s": 2,
    "hold_s": 9,
    "sample_s": 3,
    "max_steps": 1,
    "web_per_process": 60,  # the step runs an extra web simulator beside up's
    "jobs": "shop",  # one query to start: the smoke checks the bench, not the stack
}
STACK = ("broker", "collector", "jobs", "dashboard", "bookstore")
WEB, SHOP = "web-sim", "shop-sim"
OTHER_SIMS = ("bookstore-sim", "songs-sim", "users-sim", "page-events-sim")
MARKERS = PARTS | {
    "bookstore": "clickstream bookstore",
    "bookstore-sim": "clickstream simulate bookstore",
    "songs-sim": "clickstream simulate songs",
    "users-sim": "clickstream simulate users",
    "page-events-sim": "clickstream simulate page-events",
}
DELIVERED = 0.9
"""Share of the asked rate that must reach Kafka, each of web and shop."""
SATURATED = 0.8
"""Cores of one generator process from which it counts as using its whole core."""
STOP_GRACE_S = 120.0
CORES = os.cpu_count() or 1
"""The machine's cores (those /proc/stat counts)."""
HEADS = (
    "step",
    "events/s asked",
    "delivered",
    "held",
    "first to fall behind",
    "stack cores",
    *STACK,
    "generator cores",
    WEB,
    SHOP,
    "other sims",
    "machine",
    "note",
)


class CouldNotRun(Exception):
    """A step could not run: `up` exited."""


@dataclass
class Step:
    number: int
    phase: str
    rate: int
    web: list[float]
    """Events/s of each web simulator process (`up`'s first)."""
    shop: list[float]
    measured: bool = False
    """The hold ran."""
    seconds: float = 0.0
    delivered_web: float = 0.0
    delivered_shop: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)
    machine: float = 0.0
    times: list[float] = field(default_factory=list)
    lags: list[dict[str, int | None]] = field(default_factory=list)
    behind: list[str] = field(default_factory=list)
    """Queries that fell behind, the first first."""
    how: dict[str, str] = field(default_factory=dict)
    """query -> how it fell behind."""
    restarted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def asked_web(self) -> float:
        return sum(self.web)

    @property
    def asked_shop(self) -> float:
        return sum(self.shop)

    @property
    def delivered(self) -> float:
        return self.delivered_web + self.delivered_shop

    @property
    def short(self) -> bool:
        """The asked rate did not reach Kafka."""
        return self.measured and (
            self.delivered_web < DELIVERED * self.asked_web
            or self.delivered_shop < DELIVERED * self.asked_shop
        )

    @property
    def held(self) -> bool:
        return self.measured and not (self.behind or self.short or self.restarted)

    @property
    def stack_cores(self) -> float:
        return sum(self.cores.get(part, 0.0) for part in STACK)

    @property
    def generator_cores(self) -> float:
        return sum(self.cores.get(part, 0.0) for part in (WEB, SHOP, *OTHER_SIMS))

    def reasons(self) -> list[str]:
        """Why it did not hold, besides the queries that fell behind."""
        reasons = list(self.notes)
        if self.short:
            reasons.append(self.why_short())
        if self.restarted:
            reasons.append(f"up restarted {', '.join(self.restarted)}")
        return reasons

    @property
    def generator_bound(self) -> bool:
        """Short, with a generator process at its whole core or the machine's cores all busy:
        the generators could not offer the rate here, whatever the stack could take."""
        return self.short and (self.per_process >= SATURATED or self.machine >= 0.9 * CORES)

    @property
    def per_process(self) -> float:
        """Cores of the busiest kind of generator process (web-sim or shop-sim), on average."""
        per_web = self.cores.get(WEB, 0.0) / len(self.web)
        return max(per_web, self.cores.get(SHOP, 0.0) / len(self.shop))

    def why_short(self) -> str:
        """What the note says of a step whose asked rate did not reach Kafka."""
        parts = []
        for name, asked, got in (
            ("web", self.asked_web, self.delivered_web),
            ("shop", self.asked_shop, self.delivered_shop),
        ):
            if got < DELIVERED * asked:
                parts.append(f"{name} {got:,.0f} of {asked:,.0f}/s")
        if self.per_process >= SATURATED:
            cause = f"generator-bound: a generator process at {self.per_process:.2f} cores"
        elif self.machine >= 0.9 * CORES:
            cause = f"machine-bound: {self.machine:.2f} of {CORES} cores busy"
        else:
            cause = "the collector or the broker did not take it"
        return f"delivered only {', '.join(parts)} ({cause})"


def split(rate: float, per_process: float) -> list[float]:
    """``rate`` over as few processes as keep each at most ``per_process``."""
    n = max(1, math.ceil(rate / per_process - 1e-9))
    return [round(rate / n, 3)] * n


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting for I/O)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def cpu_by_part(roots: list[int]) -> dict[str, float]:
    """part -> CPU seconds so far, summed over the process trees under ``roots``."""
    total: dict[str, float] = {}
    for root in roots:
        for part, (cpu, _) in part_usage(root, MARKERS).items():
            total[part] = total.get(part, 0.0) + cpu
    return total


def topic_ends(settings: Settings, tries: int = 5) -> dict[str, int]:
    """topic -> the sum of its partitions' end offsets (a loaded broker may answer late)."""
    for _ in range(tries - 1):
        try:
            return {t.name: sum(t.ends.values()) for t in describe_topics(settings)}
        except KafkaUnavailableError:
            time.sleep(1)
    return {t.name: sum(t.ends.values()) for t in describe_topics(settings)}


def run_step(
    step: Step, args: argparse.Namespace, sets: dict[str, str], expected: set[str]
) -> None:
    """Start `up` (and the extra generators) for ``step``, measure, stop them all."""
    side = this_side()
    with tempfile.TemporaryDirectory(
        prefix="clickstream-capacity-", ignore_cleanup_errors=True
    ) as data:
        env = fresh_up_env(side, data, sets)
        # `up` starts its own broker: the bootstrap servers would make it use an external one.
        up_env = {k: v for k, v in env.items() if k != "CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"}
        command = [
            side.python,
            "-m",
            "clickstream",
            "up",
            f"--rate={step.web[0]:g}",
            f"--shop-rate={step.shop[0]:g}",
        ]
        if args.jobs:
            command.append(f"--jobs={args.jobs}")
        log = Path(data) / "up.log"
        # Under a watchdog, in its own session: stopped below on every way out, and by the
        # watchdog should this process die without a word (SIGKILL included).
        up = spawn(command, log_file=log, env=up_env, grace_s=STOP_GRACE_S)
        extras: list[subprocess.Popen[bytes]] = []
        try:
            measure(step, args, up, extras, env, Path(data), expected)
        finally:
            for extra in extras:
                stop(extra, 30)
            stop(up, STOP_GRACE_S + 30)


def start_extras(
    step: Step, env: dict[str, str], data: Path, extras: list[subprocess.Popen[bytes]]
) -> None:
    """The generator processes beyond `up`'s own web-sim and shop-sim."""
    python = this_side().python
    collector = f"http://127.0.0.1:{env['CLICKSTREAM_COLLECTOR_PORT']}"
    commands = [
        ["web", "--endless", f"--rate={rate:g}", f"--collector={collector}", "--time-scale=60"]
        for rate in step.web[1:]
    ] + [["shop", "--endless", f"--rate={rate:g}"] for rate in step.shop[1:]]
    for i, args in enumerate(commands):
        log = data / "logs" / f"extra-{args[0]}-{i}.log"
        extras.append(
            spawn(
                [python, "-m", "clickstream", "simulate", *args], log_file=log, env=env, grace_s=10
            )
        )


def alive(up: subprocess.Popen[bytes], log: Path) -> None:
    if up.poll() is not None:
        said = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise CouldNotRun(f"`up` exited ({up.returncode}):\n{said}")


def measure(
    step: Step,
    args: argparse.Namespace,
    up: subprocess.Popen[bytes],
    extras: list[subprocess.Popen[bytes]],
    env: dict[str, str],
    data: Path,
    expected: set[str],
) -> None:
    """Wait for the start and the warm-up, hold, and fill ``step`` in. ``expected``: the
    queries of earlier steps (this step's are added)."""
    log = data / "up.log"
    settings = load_settings(environ={k: v for k, v in env.items() if k.startswith("CLICKSTREAM")})
    started = time.monotonic()
    first: float | None = None  # the first data point
    ready: float | None = None  # every query committed a batch
    is_up = False
    queries = QueriesReady(data, expected)
    lag: dict[str, int | None] = {}
    while ready is None or time.monotonic() < max(ready, (first or ready) + args.warmup_s):
        alive(up, log)
        now = time.monotonic()
        if ready is None and now - started > args.start_timeout:
            waiting = queries.waiting(lag)
            step.notes.append(
                f"not started within {args.start_timeout:g} s: {', '.join(waiting) or 'no query'}"
                " committed no batch"
            )
            return
        if not is_up and "clickstream is up" in log.read_text(errors="replace"):
            is_up = True
            start_extras(step, env, data, extras)
        if is_up and ready is None:
            try:
                lag = lags(env)
            except Exception:  # Kafka busy: the next try
                lag = {}
            if first is None and any(v is not None for v in lag.values()):
                first = now
                console.print(f"  first data point after {now - started:.0f} s")
            if queries.check(lag):
                ready = now
                console.print(
                    f"  all {len(queries.seen)} queries committed a batch after"
                    f" {now - started:.0f} s;"
                    f" warm-up {args.warmup_s:g} s from the first data point"
                )
        time.sleep(2)
    expected.update(queries.seen)
    roots = [up.pid, *(p.pid for p in extras)]
    ends0 = topic_ends(settings)
    t0, cpu0, busy0 = time.monotonic(), cpu_by_part(roots), machine_busy()
    restarted0 = restarts(data)
    deadline = t0 + args.hold_s
    while True:
        alive(up, log)
        now = time.monotonic()
        try:
            lag = lags(env)
        except Exception as exc:  # a slow answer from a loaded broker: the next sample
            console.print(f"  {now - t0:5.0f} s: no lag ({type(exc).__name__}: {exc})")
        else:
            step.times.append(now - t0)
            step.lags.append(lag)
            shown = ", ".join(
                f"{q} {v:,}" if v is not None else f"{q} -" for q, v in sorted(lag.items())
            )
            console.print(f"  {now - t0:5.0f} s: lag {shown}")
        if now >= deadline:
            break
        time.sleep(min(args.sample_s, max(deadline - time.monotonic(), 0.0)))
    ends1 = topic_ends(settings)
    t1, cpu1, busy1 = time.monotonic(), cpu_by_part(roots), machine_busy()
    step.measured, step.seconds = True, t1 - t0
    step.cores = {
        part: max(cpu1.get(part, 0.0) - cpu0.get(part, 0.0), 0.0) / step.seconds for part in MARKERS
    }
    step.machine = (busy1 - busy0) / step.seconds
    topics = settings.topics
    grown = {name: ends1.get(name, 0) - ends0.get(name, 0) for name in ends1}
    web_topics = (topics.web_events, topics.web_pings, topics.web_custom)
    step.delivered_web = sum(grown.get(name, 0) for name in web_topics) / step.seconds
    step.delivered_shop = grown.get(topics.shop, 0) / step.seconds
    restarted1 = restarts(data)
    step.restarted = [p for p, n in restarted1.items() if n > restarted0.get(p, 0)]
    for extra in extras:
        if extra.poll() is not None:
            step.notes.append(f"an extra generator exited ({extra.returncode})")
    judge(step, args.max_lag_s * step.rate)


def judge(step: Step, bound: float) -> None:
    """Fill ``step.behind`` (first first) and ``step.how`` from the lags of the hold."""
    found: list[tuple[float, int, str]] = []  # (since, -last lag, query)
    for query in sorted({q for lag in step.lags for q in lag}):
        series = [(t, lag.get(query)) for t, lag in zip(step.times, step.lags, strict=True)]
        known = [(t, v) for t, v in series if v is not None]
        if not known or series[-1][1] is None:  # its first batch has not ended
            found.append((0.0, 0, query))
            step.how[query] = "committed no batch in the hold"
            continue
        values = [v for _, v in known]
        third = max(1, len(values) // 3)
        grew, top = lag_grew(values), max(values[-third:])
        if not grew and top <= bound:
            continue
        level = min(bound, 2 * statistics.median(values[:third]) + 1000)
        since = known[-1][0]
        for t, v in reversed(known):  # the start of the last run of samples above its level
            if v <= level:
                break
            since = t
        found.append((since, -values[-1], query))
        what = "grew" if grew else "stayed"
        step.how[query] = (
            f"lag {what} {values[0]:,} -> {values[-1]:,} (bound {bound:,.0f}), above "
            f"{level:,.0f} from {since:.0f} s"
        )
    step.behind = [query for *_, query in sorted(found)]


def ratio(share: float) -> str:
    """web:shop as small whole numbers (0.5 -> 1:1)."""
    web = Fraction(share).limit_denominator(20)
    shop = 1 - web
    scale = math.lcm(web.denominator, shop.denominator)
    a, b = int(web * scale), int(shop * scale)
    g = math.gcd(a, b)
    return f"{a // g}:{b // g}"


def cores_line(step: Step) -> str:
    """The stack's and the generators' cores at ``step``'s rate."""
    c = step.cores
    stack = ", ".join(f"{p} {c.get(p, 0.0):.2f}" for p in STACK)
    gens = []
    for part, rates in ((WEB, step.web), (SHOP, step.shop)):
        per = c.get(part, 0.0) / (sum(rates) / 1000) if sum(rates) else float("nan")
        gens.append(
            f"{part} {c.get(part, 0.0):.2f} in {len(rates)} process(es), "
            f"{per:.2f} per 1,000 events/s"
        )
    others = sum(c.get(p, 0.0) for p in OTHER_SIMS)
    gens.append(f"other sims {others:.2f}")
    return (
        f"at {step.rate:,} events/s: the stack {step.stack_cores:.2f} cores ({stack}); the "
        f"load generators {step.generator_cores:.2f} cores ({'; '.join(gens)}); the machine "
        f"{step.machine:.2f} of {CORES} cores busy"
    )


def row(step: Step) -> tuple[str, ...]:
    def cores(value: float) -> str:
        return f"{value:.2f}" if step.measured else "-"

    notes = step.reasons()
    if step.measured and step.generator_cores > step.stack_cores:
        notes.append("generators > stack")
    if len(step.web) > 1 or len(step.shop) > 1:
        notes.append(f"{len(step.web)} web-sim + {len(step.shop)} shop-sim processes")
    return (
        f"{step.number} {step.phase}",
        f"{step.rate:,}",
        f"{step.delivered:,.0f}" if step.measured else "-",
        "yes" if step.held else "no",
        step.behind[0] if step.behind else "-",
        cores(step.stack_cores),
        *(cores(step.cores.get(part, 0.0)) for part in STACK),
        cores(step.generator_cores),
        cores(step.cores.get(WEB, 0.0)),
        cores(step.cores.get(SHOP, 0.0)),
        cores(sum(step.cores.get(part, 0.0) for part in OTHER_SIMS)),
        cores(step.machine),
        "; ".join(notes) or "-",
    )


def say_step(step: Step) -> None:
    if not step.measured:
        console.print(f"  [red]not measured[/]: {'; '.join(step.reasons())}")
        return
    verdict = "[green]held[/]" if step.held else "[red]not held[/]"
    console.print(
        f"  {verdict}: delivered {step.delivered:,.0f} events/s (web "
        f"{step.delivered_web:,.0f}, shop {step.delivered_shop:,.0f})"
    )
    for query in step.behind:
        console.print(f"  {query} fell behind: {step.how[query]}")
    for reason in step.reasons():
        console.print(f"  {reason}")
    console.print(f"  {cores_line(step)}")


def search(args: argparse.Namespace, sets: dict[str, str], steps: list[Step]) -> None:
    """Run steps into ``steps``: doubling, then bisection (see the module docstring)."""
    good: Step | None = None
    bad: Step | None = None
    queries: set[str] = set()
    rate, phase = int(args.start), "double"
    while len(steps) < args.max_steps:
        web = split(rate * args.web_share, args.web_per_process)
        shop = split(rate * (1 - args.web_share), args.shop_per_process)
        step = Step(len(steps) + 1, phase, rate, web, shop)
        console.print(
            f"step {step.number} ({phase}): {rate:,} events/s (web {step.asked_web:,.0f} in "
            f"{len(web)} process(es), shop {step.asked_shop:,.0f} in {len(shop)})"
        )
        steps.append(step)
        run_step(step, args, sets, queries)
        say_step(step)
        if step.held:
            good = step if good is None or step.rate > good.rate else good
        else:
            bad = step if bad is None or step.rate < bad.rate else bad
        if bad is None:
            rate *= 2
        elif good is None:
            rate, phase = rate // 2, "halve"
            if rate < 10:
                return
        else:
            if bad.rate - good.rate <= args.precision * good.rate:
                return
            rate, phase = (good.rate + bad.rate) // 2, "bisect"
            if rate in (good.rate, bad.rate):
                return


def summary(steps: list[Step], args: argparse.Namespace) -> list[str]:
    """The capacity line, the cores at that rate, and the note on the generators."""
    mix = f"web:shop = {ratio(args.web_share)}"
    if args.jobs:
        mix += f"; jobs {args.jobs} only"
    held = [s for s in steps if s.held]
    failed = [s for s in steps if not s.held]
    good = max(held, key=lambda s: s.rate) if held else None
    above = [s for s in failed if good is None or s.rate > good.rate]
    bad = min(above, key=lambda s: s.rate) if above else None

    def fell(step: Step) -> str:
        if step.behind:
            return f"{step.behind[0]} (at {step.rate:,} events/s)"
        return f"none: at {step.rate:,} events/s, {'; '.join(step.reasons())}"

    lines = []
    if good is None:
        lowest = min(steps, key=lambda s: s.rate)
        lines.append(
            f"capacity: below {lowest.rate:,} events/s ({mix}): no step held, first to "
            f"fall behind: {fell(lowest)}"
        )
    elif bad is None:
        lines.append(
            f"capacity: at least {good.rate:,} events/s ({mix}), first to fall behind "
            f"above it: not reached (--max-steps {args.max_steps} ended the search)"
        )
    else:
        at_least = "at least " if bad.generator_bound and not bad.behind else ""
        wide = bad.rate - good.rate > args.precision * good.rate
        within = f" (failed at {bad.rate:,}: --max-steps ended the bisection)" if wide else ""
        lines.append(
            f"capacity: {at_least}{good.rate:,} events/s ({mix}){within}, first to "
            f"fall behind above it: {fell(bad)}"
        )
    at = good or next((s for s in steps if s.measured), None)
    if at is not None:
        lines.append(cores_line(at))
        if at.generator_cores > at.stack_cores:
            lines.append(
                f"note: at {at.rate:,} events/s the load generators used more CPU than the "
                f"stack ({at.generator_cores:.2f} against {at.stack_cores:.2f} cores): they "
                f"share this machine's {CORES} cores with it, so the stack alone would hold "
                "more here than this capacity says"
            )
    return lines


def on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--start", type=int, default=1000, help="first rate, events/s")
    parser.add_argument("--web-share", type=float, default=0.5, help="web's share of the rate")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="first data point to hold")
    parser.add_argument("--hold-s", type=float, default=300.0, help="seconds each rate is held")
    parser.add_argument("--sample-s", type=float, default=15.0, help="between lag samples")
    parser.add_argument(
        "--max-lag-s", type=float, default=30.0, help="lag bound: seconds of the asked rate"
    )
    parser.add_argument("--precision", type=float, default=0.1, help="of the held rate")
    parser.add_argument("--max-steps", type=int, default=10, help="`up` runs at most")
    parser.add_argument(
        "--web-per-process", type=float, default=600.0, help="events/s of one web simulator"
    )
    parser.add_argument(
        "--shop-per-process", type=float, default=5000.0, help="events/s of one shop simulator"
    )
    parser.add_argument(
        "--start-timeout", type=float, default=300.0, help="seconds to every query's first batch"
    )
    parser.add_argument(
        "--jobs", help="up --jobs: run only these jobs (a capacity for them alone; default: all)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="CLICKSTREAM_NAME=VALUE", help="a setting"
    )
    args = options(parser, SMOKE)
    sets = dict(item.split("=", 1) for item in args.set)
    if any(not name.startswith("CLICKSTREAM_") for name in sets):
        parser.error("--set wants CLICKSTREAM_NAME=VALUE")
    if not 0 < args.web_share < 1:
        parser.error("--web-share is between 0 and 1 (a simulator at rate 0 runs flat out)")
    if (
        args.start < 10
        or args.max_steps < 1
        or min(args.web_per_process, args.shop_per_process) <= 0
    ):
        parser.error("--start is at least 10, --max-steps at least 1, --*-per-process above 0")
    signal.signal(signal.SIGTERM, on_sigterm)  # the steps' `finally` stop `up`
    steps: list[Step] = []
    code = 0
    try:
        search(args, sets, steps)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: the step's `up` is stopped")
        code = 130
    except CouldNotRun as exc:
        console.print(f"[red]step {len(steps)} could not run: {exc}")
        code = 1
    done = [s for s in steps if s.measured or s.notes]
    if not done:
        return code or 1
    demo = Rates()
    title = (
        f"capacity search: web:shop = {ratio(args.web_share)} (bookstore {demo.bookstore:g}/s, "
        f"songs {demo.songs:g}/s, users {demo.users:g}/s besides), hold {args.hold_s:g} s after "
        f"{args.warmup_s:g} s of warm-up, lag bound {args.max_lag_s:g} s of the rate; cores "
        "averaged over the hold"
    )
    if args.jobs:
        title += f"; jobs {args.jobs} only"
    print_table(
        HEADS,
        [row(s) for s in done],
        markdown=args.markdown,
        title=title,
        left=("step", "held", "first to fall behind", "note"),
    )
    print()
    for line in summary(done, args):
        print(line)
    return code


if __name__ == "__main__":
    sys.exit(main())
