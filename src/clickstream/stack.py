"""``clickstream up`` as a service: the parts of the stack, started in order, kept running,
stopped in reverse order.

:meth:`Stack.from_settings` lays the stack out (:func:`layout`: the jobs, the collector, the
dashboard, the bookstore and, for the demo, the simulators at their rates); :meth:`Stack.run`
takes the data folder's lock, starts the embedded broker first (unless a cluster is
configured), the jobs while it boots (their Spark session takes longest to build), the other
parts once it answers and the topics exist, hands them to the
:class:`~clickstream.supervisor.Supervisor` until ``stop`` is set, then stops them in reverse
order. The parts run ``clickstream`` in child processes whose environment points at the running
broker. A part is anything with ``name``, ``start(stop)``, ``stop()``, ``healthy()`` and ``url``,
and what the supervisor needs to restart it when its process exits.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from clickstream.errors import ConfigError, TerminalError
from clickstream.kafka.admin import ensure_topics, standard_topics
from clickstream.lock import checkpoints_lock, up_lock
from clickstream.parts import BrokerPart, ExternalKafkaPart, Part
from clickstream.settings import Settings
from clickstream.signals import StopEvent, Stopped
from clickstream.streaming import checkpoint
from clickstream.supervisor import ProcessPart, Supervisor, state_path

JOBS = ("shop", "web-live", "bookstore", "songs", "joins", "sessions")
"""The jobs ``up`` runs, in one Spark session: the dashboard's first, for the first data point."""


@dataclass(frozen=True)
class Rates:
    """Events per second of the demo's simulators."""

    web: float = 5.0
    shop: float = 10.0
    """The seed's pace."""
    bookstore: float = 5.0
    songs: float = 5.0
    users: float = 2.0


@dataclass(frozen=True)
class PartSpec:
    """A part that runs ``clickstream ARGS`` in a child process, logged to ``<name>.log``."""

    name: str
    args: tuple[str, ...]
    url: str = ""
    """What it serves or sends, as ``up`` shows it."""
    health_url: str | None = None
    before_kafka: bool = False
    """Started while the broker boots: it waits for Kafka itself."""
    env: tuple[tuple[str, str], ...] = ()
    """Defaults of this part alone, as environment variables (``up``'s own environment wins)."""


def layout(
    settings: Settings,
    demo: bool = True,
    rates: Rates = Rates(),
    jobs: Sequence[str] = JOBS,
) -> list[PartSpec]:
    """The child processes of ``up``, in start order: the Spark ``jobs`` (in ``JOBS``' order)
    first; the simulators (endless) with ``demo``."""
    unknown = [name for name in jobs if name not in JOBS]
    if unknown or not jobs:
        raise ConfigError(
            f"up runs the jobs {', '.join(JOBS)}: not {', '.join(unknown) or 'none of them'}"
        )
    jobs = [name for name in JOBS if name in jobs]
    collector = f"http://{settings.collector.host}:{settings.collector.port}"
    board = f"http://{settings.dashboard.host}:{settings.dashboard.port}"
    shop = f"http://{settings.bookstore.host}:{settings.bookstore.port}"
    wait = f"--wait-for-kafka={settings.broker.startup_timeout_s:g}"
    spark = f"Spark: {', '.join(jobs)} -> {settings.duckdb_path} (clickstream sql)"
    parts = [
        PartSpec("jobs", ("jobs", "run", *jobs, wait), spark, before_kafka=True),
        PartSpec(
            "collector",
            ("collector",),
            f"{collector} (tracker: {collector}/clickstream.js, API: {collector}/docs)",
            f"{collector}/healthz",
            # The web simulator posts from loopback, each visitor's address in X-Forwarded-For:
            # believed (collector.trusted_proxies: loopback) so the demo's visitors have countries.
            env=(("CLICKSTREAM_COLLECTOR_TRUST_FORWARDED_FOR", "true"),) if demo else (),
        ),
        PartSpec("dashboard", ("dashboard",), f"{board}/", f"{board}/healthz"),
        PartSpec("bookstore", ("bookstore",), f"{shop}/", f"{shop}/healthz"),
    ]
    if not demo:
        return parts
    topics, joins, songs = settings.topics, settings.joins, settings.songs
    # Simulated web time runs 60x so sessions close (30 min idle + watermark) within a minute;
    # songs of several artists, stamped now, so the minute and hour rankings move live.
    simulators = [
        (
            "web-sim",
            ("web", f"--rate={rates.web:g}", f"--collector={collector}", "--time-scale=60"),
            f"{rates.web:g} events/s",
        ),
        (
            "shop-sim",
            ("shop", f"--rate={rates.shop:g}"),
            f"{rates.shop:g} events/s to topic {topics.shop}",
        ),
        (
            "bookstore-sim",
            ("bookstore", f"--rate={rates.bookstore:g}"),
            f"{rates.bookstore:g} events/s to topic {topics.bookstore}",
        ),
        (
            "songs-sim",
            ("songs", f"--rate={rates.songs:g}", "--all-artists", "--times=now"),
            f"{rates.songs:g} plays/s to topic {songs.topic}",
        ),
        (
            "users-sim",
            ("users", f"--rate={rates.users:g}"),
            f"{rates.users:g} users/s to topic {joins.users_topic}",
        ),
        (
            "page-events-sim",
            ("page-events",),
            f"1-10 events per user to topic {joins.events_topic}",
        ),
    ]
    for name, (kind, *args), sends in simulators:
        parts.append(PartSpec(name, ("simulate", kind, "--endless", *args), sends))
    return parts


def child_env(
    settings: Settings, config_file: Path | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """The environment of ``up``'s children: ``environ`` (the one the settings were read from),
    pointed at the running Kafka and at the data folder, with the same settings file."""
    env = dict(environ)
    env["CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"] = str(settings.kafka.bootstrap_servers)
    env["CLICKSTREAM_DATA_DIR"] = str(settings.data_dir.absolute())
    if config_file is not None:
        env["CLICKSTREAM_CONFIG"] = str(Path(config_file).absolute())
    return env


class Stack:
    """The parts of one ``clickstream up``: a plan, and the parts started from it."""

    def __init__(
        self,
        settings: Settings,
        plan: Sequence[PartSpec] = (),
        *,
        environ: Mapping[str, str],
        reset: bool = False,
        config_file: Path | None = None,
        say: Callable[[str], None] = print,
        warn: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.plan = list(plan)
        self.reset = reset
        self.config_file = config_file
        self.environ = environ
        self.say, self.warn = say, warn
        self.parts: list[Part] = []
        self._kafka: Part | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        environ: Mapping[str, str],
        demo: bool = True,
        rates: Rates = Rates(),
        jobs: Sequence[str] = JOBS,
        reset: bool = False,
        config_file: Path | None = None,
        say: Callable[[str], None] = print,
        warn: Callable[[str], None] = print,
    ) -> Stack:
        """The stack of ``clickstream up`` (:func:`layout`). ``reset`` deletes the jobs'
        checkpoints first. The children get ``environ`` and ``config_file``, which the
        settings were read from (the CLI's: its process's environment and ``--config``)."""
        plan = layout(settings, demo, rates, jobs)
        return cls(settings, plan, reset=reset, config_file=config_file, environ=environ,
                   say=say, warn=warn)  # fmt: skip

    def run(self, stop: threading.Event) -> None:
        """Start every part, keep them running until ``stop`` is set, then stop them in reverse
        order. Each stage that waits hears ``stop``. Another ``up`` on the data folder stops it
        (:class:`~clickstream.lock.FolderInUseError`) before anything is touched."""
        lock = up_lock(self.settings.data_dir).acquire()
        state_file = state_path(self.settings.data_dir)
        try:
            self.reset_checkpoints()  # before the raising scope: never half deleted by a stop
            with _raising(stop):  # a stop while a stage blocks raises Stopped where it waits
                settings = self.launch_kafka(stop)
                if stop.is_set():
                    return
                logs = settings.data_dir.absolute() / "logs"
                env = child_env(settings, self.config_file, self.environ)
                keep = (lock.fd,) if lock.fd is not None else ()  # until the last part exits
                parts = [
                    (spec, ProcessPart(spec.name, list(spec.args), {**dict(spec.env), **env},
                                       logs / f"{spec.name}.log", spec.url, spec.health_url,
                                       keep_fds=keep))
                    for spec in self.plan
                ]  # fmt: skip
                for spec, part in parts:
                    if spec.before_kafka:  # Spark builds its session while the broker starts
                        self.add(part, stop)
                self.await_kafka(stop)
                for spec, part in parts:
                    if stop.is_set():
                        return
                    if not spec.before_kafka:
                        self.add(part, stop)
            if stop.is_set():
                return
            board = settings.dashboard
            self.say(
                f"clickstream is up: open http://{board.host}:{board.port}/ "
                f"(logs in {logs}; `clickstream status` for details); press Ctrl-C to stop"
            )
            Supervisor(self.parts, say=self.say, warn=self.warn, state_file=state_file).run(stop)
        except Stopped:
            self.say("stopped while starting")
        finally:
            self.stop()
            state_file.unlink(missing_ok=True)
            lock.release()

    def reset_checkpoints(self) -> None:
        """With ``reset``, delete the jobs' checkpoints, so they read the topics again from the
        start."""
        checkpoints = checkpoint.local_root(self.settings)
        if checkpoints is None:
            if self.reset:
                raise TerminalError(
                    "--reset deletes local checkpoints only: delete "
                    f"{checkpoint.root(self.settings)} with the tools of its storage"
                )
        elif self.reset and checkpoints.exists():
            # Not while a jobs process (of another `up`, or `clickstream jobs run`) uses them.
            with checkpoints_lock(checkpoints, "clickstream up --reset"):
                shutil.rmtree(checkpoints)
            self.say(f"deleted stream checkpoints in {checkpoints} (--reset)")

    def launch_kafka(self, stop: threading.Event | None = None) -> Settings:
        """Start the embedded broker's process (unless a cluster is configured) without waiting
        for it; return the settings the other parts must use. Parts that take long to start
        (Spark) can be added before :meth:`await_kafka`."""
        if not self.settings.embedded_broker:
            self._kafka = ExternalKafkaPart(self.settings)
            return self.settings
        part = BrokerPart(self.settings, progress=self.say)
        part.launch(stop)
        self.parts.append(part)
        self._kafka = part
        checkpoints = checkpoint.local_root(self.settings)
        if part.broker.formatted_now and checkpoints and checkpoint.has_files(checkpoints):
            raise TerminalError(
                f"the stream checkpoints in {checkpoints} point into a broker whose data is "
                f"gone ({part.data} was empty): run `clickstream up --reset` to delete them"
            )
        self.settings = self.settings.with_bootstrap(part.broker.bootstrap)
        return self.settings

    def await_kafka(self, stop: threading.Event | None = None) -> None:
        """Wait until Kafka answers, then create the topics."""
        kafka = self._kafka
        assert kafka is not None, "launch_kafka first"
        if isinstance(kafka, BrokerPart):
            kafka.broker.wait_ready()
        else:
            kafka.start(stop)
            self.parts.insert(0, kafka)
        self.say(f"{kafka.name:<10} up   {kafka.url}")
        created = ensure_topics(self.settings, standard_topics(self.settings))
        if created:
            self.say(f"created topics: {', '.join(created)}")

    def add(self, part: Part, stop: threading.Event | None = None) -> None:
        """Start one more part (its wait for an answer ends early once ``stop`` is set); it
        will be stopped before the ones started earlier."""
        self.parts.append(part)  # first: a stop while it starts (Stopped) must stop it too
        part.start(stop)
        if stop is None or not stop.is_set():
            self.say(f"{part.name:<10} up   {part.url}")

    def stop(self) -> None:
        while self.parts:
            part = self.parts.pop()
            try:
                part.stop()
            finally:
                self.say(f"{part.name:<10} stopped")


def _raising(stop: threading.Event) -> AbstractContextManager[None]:
    """``stop.raising()`` for the event of :func:`~clickstream.signals.stop_signals` (a stop
    raises :class:`~clickstream.signals.Stopped` in the main thread); nothing for a plain event,
    which the stages poll."""
    return stop.raising() if isinstance(stop, StopEvent) else nullcontext()
