"""What a 503 from the collector means when its broker fails under load.

    python bench/collector_outage.py [--runs 3] [--ack-timeout 5] [--clients 8] [--freeze]

Each run: a fresh embedded broker and a collector (in this process) taking single events from
--clients clients, each event with its own id; after 3 s the broker's JVM is SIGKILLed (or, with
--freeze, SIGSTOPped: a stalled broker whose connections stay open) and brought back after twice
the ack timeout (a killed broker is started again on the same data and port, which takes a
while). Afterwards the topic is read and compared with what the clients were answered: 503s
whose event is in Kafka anyway ("503 but stored"), and of those how many were sent before the
failure (their records could be on the wire: librdkafka's "possibly persisted"); 2xx answers
missing from Kafka or stored twice; the slowest 503.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from argparse import ArgumentParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.collector.outage import broker_crash  # noqa: E402
from tests.conftest import JARS_DIR  # noqa: E402

from clickstream.settings import load_settings  # noqa: E402


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ack-timeout", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--freeze", action="store_true", help="SIGSTOP instead of SIGKILL")
    args = parser.parse_args()
    logging.getLogger("clickstream.kafka").setLevel(logging.CRITICAL)
    scratch = ROOT / ".cache"
    scratch.mkdir(exist_ok=True)
    settings = load_settings(environ={"CLICKSTREAM_JARS_DIR": str(JARS_DIR)})
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            outage = broker_crash(
                settings,
                Path(tmp) / "kafka",
                ack_timeout_s=args.ack_timeout,
                clients=args.clients,
                down_s=2 * args.ack_timeout,
                freeze=args.freeze,
            )
        print(f"run {run}: {outage.summary()}", flush=True)


if __name__ == "__main__":
    main()
