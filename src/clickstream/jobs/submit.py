"""Entry point for ``spark-submit``: run jobs on a Spark cluster.

    spark-submit --master spark://spark-master:7077 \\
        "$(python -c 'import clickstream.jobs.submit as m; print(m.__file__)')" shop web-live

The arguments are those of ``clickstream jobs run`` (job names, ``--available-now``). Settings
come from ``CLICKSTREAM_*`` variables and ``clickstream.toml`` as for every command; the master
and driver memory come from spark-submit. See docs/deployment.md.
"""

from __future__ import annotations

import sys

from clickstream.cli import main

if __name__ == "__main__":
    main(["jobs", "run", *sys.argv[1:]])
