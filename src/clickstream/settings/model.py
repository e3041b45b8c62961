"""The settings object: every section, and the paths derived from them."""

from __future__ import annotations

from pathlib import Path

from clickstream.settings.base import Section
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


class Settings(Section):
    """Everything clickstream can be told; build it with :func:`load_settings`."""

    data_dir: Path = Path(".clickstream")
    kafka: KafkaSettings = KafkaSettings()
    broker: BrokerSettings = BrokerSettings()
    topics: TopicSettings = TopicSettings()
    spark: SparkSettings = SparkSettings()
    collector: CollectorSettings = CollectorSettings()
    dashboard: DashboardSettings = DashboardSettings()
    jobs: JobSettings = JobSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    files: FilesSettings = FilesSettings()
    jars: JarsSettings = JarsSettings()
    bookstore: BookstoreSettings = BookstoreSettings()
    cassandra: CassandraSettings = CassandraSettings()
    songs: SongsSettings = SongsSettings()
    joins: JoinsSettings = JoinsSettings()

    @property
    def embedded_broker(self) -> bool:
        """True when no external cluster is configured."""
        return self.kafka.bootstrap_servers is None

    @property
    def jars_dir(self) -> Path:
        return self.jars.dir or self.data_dir / "jars"

    @property
    def broker_dir(self) -> Path:
        """The embedded broker's log folder (records, topics, its cluster id)."""
        return self.data_dir / "kafka"

    @property
    def duckdb_path(self) -> Path:
        return self.warehouse.duckdb_path or self.data_dir / "warehouse.duckdb"

    @property
    def files_url(self) -> str:
        return self.files.url or str((self.data_dir / "files").absolute())

    def with_bootstrap(self, bootstrap_servers: str) -> Settings:
        """A copy pointing at ``bootstrap_servers`` (used once the embedded broker is up)."""
        kafka = self.kafka.model_copy(update={"bootstrap_servers": bootstrap_servers})
        return self.model_copy(update={"kafka": kafka})


SECTIONS: dict[str, type[Section]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, Section)
}
