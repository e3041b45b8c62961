"""`warehouse.bigquery_credentials_file`: a service account's JSON key file, as seed 004 reads
one (`service_account.Credentials.from_service_account_file`). The key here is made by the test
and names a token server of the test's own (`token_uri`), so the whole exchange runs: the client
signs a JWT with the key, trades it for an access token, and calls the BigQuery emulator with
it."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from clickstream.errors import ConfigError
from clickstream.settings import Settings
from clickstream.sinks.bigquery import client_for
from tests.bigquery.conftest import Emulator

pytestmark = pytest.mark.slow
EMAIL = "loader@clickstream-test.iam.gserviceaccount.com"


class TokenServer:
    """OAuth's token endpoint: answers every JWT-bearer grant with an access token."""

    def __init__(self) -> None:
        self.grants: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                outer.grants.append(dict(urllib.parse.parse_qsl(body)))
                answer = json.dumps(
                    {"access_token": "token-1", "expires_in": 3600, "token_type": "Bearer"}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    try:
        yield server
    finally:
        server.server.shutdown()


def key_file(path: Path, token_uri: str) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "clickstream-test",
                "private_key_id": "key-1",
                "private_key": pem,
                "client_email": EMAIL,
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return path


def with_bigquery(settings: Settings, emulator: Emulator, credentials: Path) -> Settings:
    warehouse = settings.warehouse.model_copy(
        update={
            "bigquery_project": emulator.project,
            "bigquery_endpoint": emulator.endpoint,
            "bigquery_credentials_file": credentials,
        }
    )
    return settings.model_copy(update={"warehouse": warehouse})


def test_the_key_file_is_read_and_its_token_is_used(
    settings: Settings, bigquery_emulator: Emulator, token_server: TokenServer, tmp_path: Path
) -> None:
    key = key_file(tmp_path / "bq-service-account.json", token_server.url)
    _, client = client_for(with_bigquery(settings, bigquery_emulator, key))
    assert client._credentials.service_account_email == EMAIL

    rows = list(client.query("SELECT 41 + 1 AS answer").result())

    assert [r.answer for r in rows] == [42]
    assert len(token_server.grants) == 1
    grant = token_server.grants[0]
    assert grant["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    claims = grant["assertion"].split(".")[1]
    claims += "=" * (-len(claims) % 4)
    assert json.loads(base64.urlsafe_b64decode(claims))["iss"] == EMAIL


def test_a_missing_or_broken_key_file_is_one_clear_error(
    settings: Settings, bigquery_emulator: Emulator, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.json"
    with pytest.raises(ConfigError, match=r"bigquery_credentials_file: .*nowhere.json does not"):
        client_for(with_bigquery(settings, bigquery_emulator, missing))
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "service_account", "client_email": EMAIL}))
    with pytest.raises(ConfigError, match="is not a service account's JSON key"):
        client_for(with_bigquery(settings, bigquery_emulator, broken))
