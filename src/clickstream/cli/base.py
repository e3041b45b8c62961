"""The ``clickstream`` group, its context and one-line errors."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from clickstream import __version__
from clickstream.errors import ClickstreamError
from clickstream.settings import Settings, load_settings


class Context:
    def __init__(self, settings: Settings, config_file: Path | None = None) -> None:
        self.settings = settings
        self.config_file = config_file
        """``--config``, as given (``up`` hands it to its children)."""

    def client_settings(self) -> Settings:
        """Settings for a command that talks to Kafka: the configured cluster, or the embedded
        broker at its configured address."""
        from clickstream.kafka.discovery import client_settings

        return client_settings(self.settings)


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
    _setup_logging(debug)
    ctx.obj = Context(load_settings(config_file), config_file)


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
