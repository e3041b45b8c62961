"""One frozen settings object, read from a TOML file and ``CLICKSTREAM_*`` environment variables.

Precedence, lowest first: defaults, the TOML file, environment variables. A TOML file has one
table per section (``[kafka]``, ``[spark]``...); the environment variable of a setting is
``CLICKSTREAM_<SECTION>_<NAME>`` (``CLICKSTREAM_KAFKA_BOOTSTRAP_SERVERS``), or
``CLICKSTREAM_<NAME>`` for top-level ones (``CLICKSTREAM_DATA_DIR``). The file is
``$CLICKSTREAM_CONFIG``, else ``--config``, else ``./clickstream.toml`` when it exists.

Nothing else in the package reads ``os.environ``: code receives a :class:`Settings`.
Every setting is documented in ``docs/configuration.md`` (a test checks this).

The sections live by concept: :mod:`~clickstream.settings.platform` (Kafka, broker, topics,
Spark, jobs, warehouse, files, jars), :mod:`~clickstream.settings.services` (collector,
dashboard), :mod:`~clickstream.settings.scenarios` (bookstore, Cassandra, songs, joins); the
object in :mod:`~clickstream.settings.model`, the reading in :mod:`~clickstream.settings.loading`.
"""

from clickstream.settings.base import CONFIG_ENV, DEFAULT_CONFIG_FILE, ENV_PREFIX, env_name
from clickstream.settings.loading import all_env_names, load_settings
from clickstream.settings.model import SECTIONS, Settings
from clickstream.settings.platform import (
    BrokerSettings,
    FilesSettings,
    JarsSettings,
    JobSettings,
    KafkaSettings,
    SparkSettings,
    TopicSettings,
    WarehouseSettings,
)
from clickstream.settings.scenarios import (
    BookstoreSettings,
    CassandraSettings,
    JoinsSettings,
    SongsSettings,
)
from clickstream.settings.services import CollectorSettings, DashboardSettings

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "SECTIONS",
    "BookstoreSettings",
    "BrokerSettings",
    "CassandraSettings",
    "CollectorSettings",
    "DashboardSettings",
    "FilesSettings",
    "JarsSettings",
    "JobSettings",
    "JoinsSettings",
    "KafkaSettings",
    "Settings",
    "SongsSettings",
    "SparkSettings",
    "TopicSettings",
    "WarehouseSettings",
    "all_env_names",
    "env_name",
    "load_settings",
]
