"""The ``clickstream`` group, its context and one-line errors."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import click

from clickstream import __version__
from clickstream.errors import ClickstreamError, KafkaUnavailableError
from clickstream.settings import Settings, load_settings


class Context:
    def __init__(self, settings: Settings, debug: bool) -> None:
        self.settings = settings
        self.debug = debug

    def client_settings(self) -> Settings:
        """Settings for a command that talks to Kafka: the configured cluster, or the embedded
        broker at its configured address (started elsewhere with ``clickstream broker``)."""
        if self.settings.kafka.bootstrap_servers:
            if self.settings.kafka.security_protocol != "PLAINTEXT":
                _check_credentials(self.settings)
            return self.settings
        broker = self.settings.broker
        if broker.port == 0:
            raise ClickstreamError(
                "no Kafka address: set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS to the broker's address"
            )
        settings = self.settings.with_bootstrap(f"{broker.host}:{broker.port}")
        from clickstream.kafka.admin import wait_for_cluster

        try:
            wait_for_cluster(settings, timeout=min(3.0, settings.kafka.timeout_s))
        except KafkaUnavailableError:
            raise KafkaUnavailableError(
                f"no broker at {broker.host}:{broker.port}: start one with `clickstream broker` "
                "(or `clickstream up`), or set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS"
            ) from None
        return settings


pass_context = click.make_pass_decorator(Context)


def _setup_logging(debug: bool) -> None:
    """Our warnings on stderr; librdkafka's chatter (connection retries) only with --debug."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not debug:
        logging.getLogger("clickstream.kafka").setLevel(logging.CRITICAL)


def warn(message: str) -> None:
    click.secho(message, err=True, fg="yellow")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML settings file (default: ./clickstream.toml if present).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, prog_name="clickstream")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None, debug: bool) -> None:
    """Real-time user-event analytics: Kafka in, Spark in the middle, dashboards out."""
    ctx.meta["debug"] = debug
    _setup_logging(debug)
    ctx.obj = Context(load_settings(config_file), debug)


@cli.command("config")
@pass_context
def show_config(ctx: Context) -> None:
    """Print the settings in effect as TOML (secrets and write keys masked): saved to a file,
    it reads back as the same settings."""
    from clickstream.settings.dump import settings_toml

    click.echo(settings_toml(ctx.settings), nl=False)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors unless ``--debug``."""
    args = sys.argv[1:] if argv is None else argv
    try:
        cli.main(args=args, prog_name="clickstream", standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ClickstreamError as exc:
        if "--debug" in args:
            raise
        click.secho(f"error: {exc}", err=True, fg="red")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if "--debug" in args:
            raise
        click.secho(
            f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
            err=True,
            fg="red",
        )
        sys.exit(1)


def _check_credentials(settings: Settings) -> None:
    """Stop at once, in one line, on a wrong password or an untrusted certificate (a cluster
    that does not answer yet is left to the command, which may wait for it)."""
    from clickstream.kafka.admin import wait_for_cluster

    with contextlib.suppress(KafkaUnavailableError):
        wait_for_cluster(settings, timeout=min(5.0, settings.kafka.timeout_s))
