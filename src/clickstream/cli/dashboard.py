"""``clickstream dashboard``: the live dashboard's web server."""

from __future__ import annotations

import click

from clickstream.cli.base import Context, cli, pass_context


@cli.command()
@click.option("--host", help="Address to listen on. Default: dashboard.host.")
@click.option("--port", type=click.IntRange(0, 65535), help="Default: dashboard.port (0: any).")
@pass_context
def dashboard(ctx: Context, host: str | None, port: int | None) -> None:
    """Serve the live dashboard (results topic in, browsers out) until Ctrl-C."""
    import uvicorn

    from clickstream.dashboard.app import create_app, listen
    from clickstream.signals import stop_signals

    settings = ctx.client_settings()
    bind_host = host or settings.dashboard.host
    bind_port = settings.dashboard.port if port is None else port
    sock = listen(bind_host, bind_port)
    shown_host = f"[{bind_host}]" if ":" in bind_host else bind_host
    url = f"http://{shown_host}:{sock.getsockname()[1]}/"
    click.echo(
        f"dashboard on {url} <- topic {settings.topics.results} at "
        f"{settings.kafka.bootstrap_servers}",
    )
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    # uvicorn stops on SIGINT/SIGTERM (the app's shutdown stops the results reader), then
    # raises the signal again for the handler it found: ours, so that we end normally.
    with stop_signals():
        uvicorn.Server(config).run(sockets=[sock])
    click.echo("dashboard stopped")
