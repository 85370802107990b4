"""The exporter's HTTP endpoints besides /metrics."""

import html
import re

import pytest
import requests
import yaml

from exporter.cli import build_parser, overrides_from_args
from exporter.config import load_config
from exporter.runtime import start_exporter
from tests.conftest import ExporterHandle
from tests.helpers import wait_until


def test_health_and_readiness(exporter):
    assert exporter.get("/-/healthy").status_code == 200
    reply = exporter.get("/-/ready")
    assert (reply.status_code, reply.text) == (200, "Ready\n")


def test_landing_page_links_to_every_endpoint(exporter):
    reply = exporter.get("/")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    for link in ('href="/metrics"', 'href="/-/healthy"', 'href="/-/ready"', 'href="/config"'):
        assert link in reply.text


def _landing_row(page: str, name: str) -> str:
    match = re.search(rf"<tr><th>{name}</th><td>(.*?)</td></tr>", page)
    assert match, page
    return html.unescape(match.group(1))


def test_landing_page_shows_the_models_in_effect_and_the_golden_files(simulator,
                                                                       start_exporter_for):
    from tfserving_simulator.demo_files import STANDIN_GOLDEN_DIR, models_config_text

    # Models come from models.config (the simulator's) and the golden sets, none from flags.
    exporter = start_exporter_for(simulator, canary__golden_dir=STANDIN_GOLDEN_DIR)
    page = exporter.get("/").text
    assert _landing_row(page, "Models") == "half_plus_two, image_classifier"
    canaries = _landing_row(page, "Canaries")
    for model in ("half_plus_two", "image_classifier"):
        assert f"{model}: {STANDIN_GOLDEN_DIR}/{model}.json" in canaries
    # models.config is followed: a model added there shows on the next look.
    with open(simulator.files.model_config_file, "w", encoding="utf-8") as handle:
        handle.write(models_config_text([("half_plus_two", "/models/half_plus_two"),
                                         ("image_classifier", "/models/image_classifier"),
                                         ("another", "/models/another")]))
    wait_until(lambda: _landing_row(exporter.get("/").text, "Models")
               == "another, half_plus_two, image_classifier", message="models.config followed")


def test_landing_page_says_when_no_model_is_configured(simulator, start_exporter_for):
    exporter = start_exporter_for(simulator, tfserving__model_config_file="")
    page = exporter.get("/").text
    assert _landing_row(page, "Models").startswith("(none: give --model")
    assert _landing_row(page, "Canaries").startswith("no golden files")


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


@pytest.fixture
def started_from_flags(simulator, tmp_path):
    """An exporter started as ``run`` starts it: a config file, and flags parsed by the CLI.
    Returns it and the configuration it was started with."""
    started = []

    def start(config_text: str, *flags: str):
        config_file = tmp_path / "config.yaml"
        config_file.write_text(config_text)
        args = build_parser().parse_args([
            "run", f"--config.file={config_file}", "--web.listen-address=127.0.0.1:0",
            f"--tfserving.grpc-address=127.0.0.1:{simulator.grpc_port}",
            f"--tfserving.rest-address=http://127.0.0.1:{simulator.rest_port}", *flags])
        overrides = overrides_from_args(args)
        config = load_config(args.config_file, overrides)
        running = start_exporter(config, args.config_file, overrides)
        started.append(running)
        return ExporterHandle(running), config

    yield start
    for running in started:
        running.stop()


def test_config_serves_the_effective_configuration(started_from_flags, tmp_path):
    exporter, config = started_from_flags("models: [half_plus_two]\ncanary:\n  interval: 45s\n",
                                          "--canary.timeout=7s", "--no-collector.metadata")
    reply = exporter.get("/config")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"] == "text/plain; charset=utf-8"
    served = yaml.safe_load(reply.text)
    assert served["models"] == ["half_plus_two"]
    assert served["canary"]["interval"] == "45s"  # from the file
    assert served["canary"]["timeout"] == "7s"  # from a flag, over the default
    assert served["collectors"]["metadata"]["enabled"] is False
    assert served["web"]["listen_address"] == "127.0.0.1:0"

    written = tmp_path / "served.yaml"
    written.write_text(reply.text)
    assert load_config(str(written)) == config


def test_config_follows_a_reload(started_from_flags, tmp_path):
    exporter, _ = started_from_flags("models: [half_plus_two]\n", "--canary.timeout=7s")
    (tmp_path / "config.yaml").write_text("models: [half_plus_two, other]\n")
    assert requests.post(exporter.url + "/-/reload", timeout=30).status_code == 200
    served = yaml.safe_load(exporter.get("/config").text)
    assert served["models"] == ["half_plus_two", "other"]
    assert served["canary"]["timeout"] == "7s"  # flags stay as given


def test_head_config_answers_the_headers_only(exporter):
    got = exporter.get("/config")
    head = requests.head(exporter.url + "/config", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]
    assert head.headers["Content-Length"] == str(len(got.content))


def test_config_needs_the_credentials_metrics_need(simulator, start_exporter_for, tmp_path):
    import bcrypt  # the exporter's own dependency, for basic auth

    hashed = bcrypt.hashpw(b"scrape", bcrypt.gensalt(4)).decode()  # low cost: tests only
    web_file = tmp_path / "web.yaml"
    web_file.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    exporter = start_exporter_for(simulator, web__config_file=str(web_file))
    assert exporter.get("/config").status_code == 401
    assert exporter.get("/metrics").status_code == 401
    reply = exporter.get("/config", auth=("prometheus", "scrape"))
    assert reply.status_code == 200
    assert yaml.safe_load(reply.text)["web"]["config_file"] == str(web_file)
