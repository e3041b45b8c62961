"""Write the lock files of the jar sets clickstream (and its tests) fetch: the jars Apache Ivy
resolves for each set, with their SHA-1 and size. Run it after changing a set's artifacts (a
lock written for other artifacts is ignored, and that set is resolved by Ivy again, slowly).

    .venv/bin/python scripts/lock_jars.py [--repository URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.cassandra_node

from tests.cassandra_node import CASSANDRA_JARS

from clickstream.broker.node import KAFKA_JARS, java_executable
from clickstream.maven import MAVEN_CENTRAL, JarSet, ivy, locked
from clickstream.settings import load_settings
from clickstream.spark.session import kafka_connector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", default=MAVEN_CENTRAL)
    args = parser.parse_args()
    java = java_executable(load_settings())
    sets: list[JarSet] = [KAFKA_JARS, kafka_connector(), CASSANDRA_JARS]
    with tempfile.TemporaryDirectory(prefix="lock-jars-") as scratch:
        for jar_set in sets:
            work = Path(scratch) / jar_set.folder
            work.mkdir()
            tree = ivy.retrieve(
                jar_set, work, Path(scratch) / "ivy", java, args.repository, print, 900.0,
                pattern=ivy.TREE,
            )  # fmt: skip
            jar_set.lock_file.write_text(locked.lock_text(jar_set, tree))
            count = sum(1 for _ in tree.rglob("*.jar"))
            print(f"{jar_set.title}: {count} jars locked in {jar_set.lock_file}")


if __name__ == "__main__":
    main()
