"""The reference for bench/collector.py: the seed's endpoint, written and served the seed's way.

    python bench/flask_reference.py --bootstrap 127.0.0.1:9092 [--port 5000] [--topic webevent]
        [--gunicorn WORKERS]

Flask + flask-restful + kafka-python, as the original project writes its collector: a
``Resource`` that parses the arguments with ``reqparse``, hands the dict to a ``KafkaProducer``
with a JSON ``value_serializer`` and answers ``{'id': timestamp}, 200`` at once, without waiting
for Kafka's acknowledgement. Served by Flask's built-in server (``app.run(threaded=True)``,
request logging included), or with ``--gunicorn N`` by gunicorn with N sync workers, as such an
app is deployed (each worker with its own producer). Not a dependency of clickstream: install
its packages into the benchmark's environment only (``pip install -e '.[reference]'``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flask import Flask
from flask_restful import Api, Resource, reqparse

from kafka import KafkaProducer

FIELDS = (
    "pageUrl",
    "lastPageVisited",
    "timestamp",
    "eventType",
    "uiud",
    "sessionId",
    "referrer",
    "landingPage",
)


def create_app(bootstrap: str, topic: str) -> Flask:
    app = Flask(__name__)
    api = Api(app)
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        value_serializer=lambda value: json.dumps(value).encode("utf-8"),
    )

    class WebEvents(Resource):  # type: ignore[misc]
        def post(self) -> tuple[dict[str, Any], int]:
            parser = reqparse.RequestParser()
            for field in FIELDS:
                parser.add_argument(field)
            args = parser.parse_args()
            data = {field: args[field] for field in FIELDS}
            producer.send(topic, value=data)
            return {"id": args["timestamp"]}, 200

    api.add_resource(WebEvents, "/api/webeventspub")
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--topic", default="webevent")
    parser.add_argument("--gunicorn", type=int, default=0, help="sync workers (0: Flask's server)")
    args = parser.parse_args()
    if not args.gunicorn:
        create_app(args.bootstrap, args.topic).run(host="127.0.0.1", port=args.port, threaded=True)
        return
    # gunicorn in this process: its master forks the workers, each building the app itself.
    factory = f"flask_reference:create_app({args.bootstrap!r}, {args.topic!r})"
    sys.argv = ["gunicorn", "--workers", str(args.gunicorn), "--worker-class", "sync"]
    sys.argv += ["--bind", f"127.0.0.1:{args.port}", "--chdir", str(Path(__file__).parent)]
    sys.argv += ["--log-level", "warning", factory]
    from gunicorn.app.wsgiapp import run

    run()


if __name__ == "__main__":
    main()
