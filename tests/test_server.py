"""The exporter's HTTP endpoints besides /metrics."""

import requests


def test_health_and_readiness(exporter):
    assert exporter.get("/-/healthy").status_code == 200
    reply = exporter.get("/-/ready")
    assert (reply.status_code, reply.text) == (200, "Ready\n")


def test_landing_page_links_to_every_endpoint(exporter):
    reply = exporter.get("/")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    for link in ('href="/metrics"', 'href="/-/healthy"', 'href="/-/ready"'):
        assert link in reply.text


def test_unknown_paths_and_methods_are_refused(exporter):
    assert exporter.get("/nope").status_code == 404
    reply = requests.post(exporter.url + "/metrics", timeout=10)
    assert reply.status_code == 405
    assert reply.headers["Allow"] == "GET, HEAD"


def test_gzip_is_used_when_accepted(exporter):
    reply = exporter.get(headers={"Accept-Encoding": "gzip"})
    assert reply.headers.get("Content-Encoding") == "gzip"
    assert "tfserving_up" in reply.text  # requests decodes it


def test_custom_telemetry_path(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, web__telemetry_path="/custom")
    assert "tfserving_up" in exporter.get("/custom").text
    assert exporter.get("/metrics").status_code == 404


def test_oversized_requests_are_refused_unread(exporter):
    big = requests.post(exporter.url + "/-/reload", data=b"x" * (65 * 1024), timeout=10)
    assert big.status_code == 413
    long_query = exporter.get("/metrics?" + "a" * 5000)
    assert long_query.status_code == 413
    assert exporter.get("/metrics").status_code == 200  # still serving
