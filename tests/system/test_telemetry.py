"""
OpenTelemetry export to Application Insights, switched on by
APPLICATIONINSIGHTS_CONNECTION_STRING: a Daphne whose connection string names
an ingestion endpoint on loopback sends it a request trace for a page it served
and the chat's own log lines. Everything else the exporter would reach for
(its settings service, its own statistics, the virtual machine's metadata) is
switched off, and any other address goes to a proxy that does not answer.
"""

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.harness.clients import ChatClient
from tests.harness.fixtures import (
    fixture_database,  # noqa: F401 - a pytest fixture
    fixture_room,  # noqa: F401 - a pytest fixture
)
from tests.harness.http import http_get
from tests.harness.ports import free_port
from tests.harness.servers import Cluster, static_env
from tests.harness.waiting import wait_until_async

pytestmark = pytest.mark.processes

INSTRUMENTATION_KEY = "00000000-0000-4000-8000-000000000001"


class Ingestion(ThreadingHTTPServer):
    """Application Insights' ingestion endpoint, as far as the exporter sees it:
    it keeps every envelope it is sent."""

    def __init__(self) -> None:
        self.envelopes: list[dict] = []
        super().__init__(("127.0.0.1", free_port()), _Track)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"

    def of_kind(self, base_type: str) -> list[dict]:
        return [
            envelope["data"]["baseData"]
            for envelope in list(self.envelopes)
            if envelope.get("data", {}).get("baseType") == base_type
        ]


class _Track(BaseHTTPRequestHandler):
    server: Ingestion

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        items = json.loads(body)
        self.server.envelopes.extend(items)
        answer = json.dumps(
            {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def ingestion():
    server = Ingestion()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cluster(ingestion, database, tmp_path, _collected_static):
    env = {
        **static_env(),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey={INSTRUMENTATION_KEY};IngestionEndpoint={ingestion.url}"
        ),
        # Sent within a fraction of a second rather than every 5 s.
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        # Nothing leaves the machine: no settings service, no statistics of
        # the exporter's own, no metadata service of a virtual machine.
        "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_app_service",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1",
        "LOG_LEVEL": "INFO",
    }
    with Cluster(tmp_path, database, instances=1, env=env) as cluster:
        yield cluster


async def test_a_page_and_the_chats_log_lines_reach_application_insights(
    cluster, ingestion, room
):
    (server,) = cluster.servers
    status, _headers, _body = await http_get(f"{server.http}/rooms/{room.slug}/")
    assert status == 200
    # A join writes one of the chat's INFO lines (which name no one).
    alice = ChatClient("alice", room.slug)
    try:
        await alice.connect(server)
    finally:
        await alice.close()

    def request_traced():
        return [
            r for r in ingestion.of_kind("RequestData") if room.slug in r.get("url", "")
        ]

    (request,) = await wait_until_async(request_traced, 20, "the page's trace")
    assert request["responseCode"] == "200"
    joined = f"join room={room.slug}"
    (line,) = await wait_until_async(
        lambda: [m for m in ingestion.of_kind("MessageData") if joined in m["message"]],
        20,
        "the chat's log line of the join",
    )
    assert line["severityLevel"] == 1  # Information
    assert not cluster.tracebacks()
