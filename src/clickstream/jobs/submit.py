"""Entry point for ``spark-submit``: run jobs on a Spark cluster.

    spark-submit --master spark://spark-master:7077 \\
        "$(python -c 'import clickstream.jobs.submit as m; print(m.__file__)')" shop web-live

The arguments are those of ``clickstream jobs run`` (job names, ``--available-now``,
``--wait-for-kafka``). Settings come from ``CLICKSTREAM_*`` variables and ``clickstream.toml``
as for every command; the master and driver memory come from spark-submit. The loop is
:func:`clickstream.streaming.runner.run_jobs`, the one ``clickstream jobs run`` runs. See
docs/deployment.md.
"""

from __future__ import annotations

import argparse
import sys

from clickstream.errors import ClickstreamError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clickstream.jobs.submit")
    parser.add_argument("names", nargs="+", metavar="NAME")
    parser.add_argument("--available-now", action="store_true")
    parser.add_argument("--wait-for-kafka", type=float, default=None)
    args = parser.parse_args(argv)

    from clickstream.jobs import pick
    from clickstream.settings import load_settings
    from clickstream.streaming.runner import run_jobs

    try:
        settings = load_settings(None)
        if settings.kafka.bootstrap_servers is None:
            raise ClickstreamError(
                "no Kafka address: set CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS for spark-submit"
            )
        run_jobs(
            settings,
            pick(args.names),
            available_now=args.available_now,
            wait_for_kafka=args.wait_for_kafka,
            say=lambda line: print(line, flush=True),
        )
    except ClickstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
