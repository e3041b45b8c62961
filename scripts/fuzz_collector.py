"""Fuzz the collector against its own OpenAPI document with Schemathesis.

    python scripts/fuzz_collector.py [--max-examples 1000] [--seed N] [-- SCHEMATHESIS ARGS...]

Starts an embedded broker and a collector (as ``clickstream collector`` serves it) on free
loopback ports, then runs ``schemathesis run`` on ``/openapi.json`` with every check (no 5xx,
answers that match the document, schema-valid requests accepted, invalid ones refused, 405 for
undeclared methods...), all phases (examples, coverage, fuzzing, stateful). Exits with
Schemathesis' status. CI runs a short, fixed-seed version of this
(``tests/collector/test_openapi_fuzz.py``); run this one for longer after changing the
collector or the event schemas.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
from argparse import ArgumentParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.collector.conftest import collector_settings, serve  # noqa: E402
from tests.conftest import JARS_DIR, own_broker  # noqa: E402

from clickstream.settings import load_settings  # noqa: E402


def schemathesis_command(url: str, max_examples: int, *extra: str) -> list[str]:
    """``schemathesis run`` against a collector at ``url``, every check on."""
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--url",
        url,
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--generation-database",
        "none",
        "--request-timeout",
        "30",
        "--no-color",
        *extra,
    ]


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("extra", nargs="*", help="more schemathesis run arguments (after --)")
    args = parser.parse_args()
    logging.getLogger("clickstream.kafka").setLevel(logging.CRITICAL)
    scratch = ROOT / ".cache"
    scratch.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        broker = own_broker(Path(tmp) / "kafka")
        try:
            settings = load_settings(environ={"CLICKSTREAM_JARS_DIR": str(JARS_DIR)})
            collector = serve(collector_settings(settings.with_bootstrap(broker.start())))
            try:
                seed = ["--seed", str(args.seed)] if args.seed is not None else []
                command = schemathesis_command(collector.url, args.max_examples, *seed, *args.extra)
                # In the scratch folder: Schemathesis keeps a cache in its working folder.
                return subprocess.run(command, check=False, cwd=scratch).returncode
            finally:
                collector.stop()
        finally:
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())
