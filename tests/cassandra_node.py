"""One Apache Cassandra 5.0 node for tests and benchmarks: its jars from Maven Central (resolved
and cached like the broker's, see :mod:`clickstream.maven`), a minimal ``cassandra.yaml`` in its
own folder, loopback ports, a small heap, and the JVM flags Cassandra needs on Java 17 (those of
its ``conf/jvm17-server.options``). Runs under the watchdog: it never outlives the test run."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from clickstream.broker.embedded import free_port
from clickstream.children import child_pid, spawn
from clickstream.children import stop as stop_child
from clickstream.maven import Artifact, JarSet, resolve

CASSANDRA_VERSION = "5.0.6"
CASSANDRA_JARS = JarSet(
    folder=f"cassandra-{CASSANDRA_VERSION}",
    title=f"Apache Cassandra {CASSANDRA_VERSION}",
    artifacts=(Artifact("org.apache.cassandra", "cassandra-all", CASSANDRA_VERSION),),
    lock=Path(__file__).with_name(f"cassandra-{CASSANDRA_VERSION}.jars.txt"),
)
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"

# conf/jvm17-server.options of Cassandra 5.0 (module access it needs on Java 17).
JVM17 = [
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports=java.sql/java.sql=ALL-UNNAMED",
    "--add-exports=java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
    "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
]

LOGBACK = """<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%d %-5level [%thread] %logger{{20}} %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""


def client_tls_yaml(keystore: Path, password: str) -> str:
    """TLS on the CQL port, plain connections still taken on the same port (``optional``)."""
    return f"""client_encryption_options:
  enabled: true
  optional: true
  keystore: {keystore}
  keystore_password: {password}
  store_type: PKCS12
  require_client_auth: false
"""


def cassandra_yaml(folder: Path, native_port: int, storage_port: int) -> str:
    return f"""cluster_name: clickstream-test
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:{storage_port}"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: {storage_port}
native_transport_port: {native_port}
start_native_transport: true
authenticator: PasswordAuthenticator
authorizer: AllowAllAuthorizer
commitlog_sync: periodic
commitlog_sync_period: 10000ms
data_file_directories: [{folder}/data]
commitlog_directory: {folder}/commitlog
saved_caches_directory: {folder}/saved_caches
hints_directory: {folder}/hints
cdc_raw_directory: {folder}/cdc_raw
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 8
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
"""


class CassandraNode:
    """``with CassandraNode(folder, jars_dir) as node:`` a node on ``node.port`` (CQL), user
    ``cassandra``/``cassandra``. ``stop()`` and ``start()`` again keep its data and ports."""

    def __init__(
        self,
        folder: Path,
        jars_dir: Path,
        heap: str = "512m",
        tls_keystore: tuple[Path, str] | None = None,
    ) -> None:
        """``tls_keystore``: a PKCS12 file and its password: the CQL port takes TLS too."""
        self.folder = folder
        self.tls_keystore = tls_keystore
        self.jars_dir = jars_dir
        self.heap = heap
        self.port = free_port()
        self.storage_port = free_port()
        self.log = folder / "cassandra.log"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        jars = resolve(
            CASSANDRA_JARS, self.jars_dir, java=Path("java"), progress=lambda s: print(s)
        )
        conf = self.folder / "conf"
        conf.mkdir(parents=True, exist_ok=True)
        yaml = cassandra_yaml(self.folder, self.port, self.storage_port)
        if self.tls_keystore is not None:
            yaml += client_tls_yaml(*self.tls_keystore)
        (conf / "cassandra.yaml").write_text(yaml)
        (conf / "logback.xml").write_text(LOGBACK.format(log=self.folder / "system.log"))
        return [
            "java",
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxDirectMemorySize=256m",
            "-Xss512k",
            *JVM17,
            f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}",
            f"-Dlogback.configurationFile=file://{conf / 'logback.xml'}",
            f"-Dcassandra.storagedir={self.folder}",
            f"-Dcassandra.logdir={self.folder}",
            "-Dcassandra-foreground=yes",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Dcassandra.ring_delay_ms=100",
            "-Dcassandra.load_ring_state=false",
            "-cp",
            ":".join(str(jar) for jar in jars),
            MAIN_CLASS,
        ]

    def start(self, timeout_s: float = 240.0) -> None:
        self.process = spawn(self.command(), log_file=self.log, grace_s=30)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Cassandra exited at start: see {self.log}\n{self.tail()}")
            if self._answers():
                return
            time.sleep(0.5)
        raise RuntimeError(f"Cassandra did not answer within {timeout_s} s: see {self.log}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster

        cluster = Cluster(
            ["127.0.0.1"],
            port=self.port,
            auth_provider=PlainTextAuthProvider("cassandra", "cassandra"),
            connect_timeout=5,
        )
        try:
            cluster.connect().execute("SELECT release_version FROM system.local")
            return True
        except Exception:
            return False
        finally:
            cluster.shutdown()

    def stop(self) -> None:
        if self.process is not None:
            stop_child(self.process, timeout=60)
            self.process = None

    def pid(self) -> int | None:
        return child_pid(self.process) if self.process is not None else None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> CassandraNode:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
