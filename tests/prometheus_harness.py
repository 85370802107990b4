"""A real Prometheus server for tests: scrape the exporter and the simulator, query the results.

Tests use the ``prometheus_for`` fixture (import it into the test module, or list this module in
``pytest_plugins`` of the root conftest)::

    from tests.prometheus_harness import prometheus_for  # noqa: F401  (pytest fixture)

    def test_x(prometheus_for, exporter):
        prom = prometheus_for([{"job_name": "exporter", "targets": [exporter_target]}])
        prom.wait_for_targets_up(["exporter"])
        assert prom.query_value('tfserving_up{protocol="grpc"}') == 1

The fixture depends on ``prometheus_binary`` (tests/conftest.py), so every test using it runs
twice, on Prometheus 2.x and 3.x (tests/prometheus_versions.py says where each is found); a
test that must know which takes ``prometheus_version`` too.

Everything stays on 127.0.0.1: the web listener, and every scrape target (checked when the
configuration is written). Every HTTP call carries a timeout, every wait polls with a deadline,
and failures quote the tail of Prometheus' own log, which is kept under the test's tmp_path.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
import requests
import yaml

from tests.helpers import free_port, wait_until

# One HTTP call to Prometheus; it answers local API calls in milliseconds, so this only
# matters when the process is wedged.
HTTP_TIMEOUT_SECONDS = 10.0
STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 10.0
LOG_TAIL_LINES = 40
LOCAL_HOST = "127.0.0.1"

# Defaults for every job: tests want fresh samples quickly. A job may override them.
DEFAULT_SCRAPE_INTERVAL = "1s"
TFSERVING_PAGE = "/monitoring/prometheus/metrics"


class PrometheusError(AssertionError):
    """Prometheus did not start, answered with an error, or a wait ran out of time."""


def _check_local_target(target: str) -> None:
    host, _, port = target.rpartition(":")
    if host != LOCAL_HOST or not port.isdigit():
        raise ValueError(f"scrape targets must be {LOCAL_HOST}:<port>, got {target!r}")


def scrape_config(job: dict) -> dict:
    """One ``scrape_configs`` entry from the harness' short form.

    ``{"job_name", "targets": ["127.0.0.1:PORT"], ...}``: ``targets`` becomes a static config;
    every other key (``metrics_path``, ``scrape_interval``, ``scrape_timeout``, ``params``,
    ``metric_relabel_configs``, ...) is passed to Prometheus unchanged.
    """
    job = dict(job)
    if "job_name" not in job:
        raise ValueError(f"scrape job without job_name: {job!r}")
    targets = list(job.pop("targets", ()))
    if not targets:
        raise ValueError(f"job {job['job_name']!r} has no targets")
    for target in targets:
        _check_local_target(target)
    job.setdefault("scrape_interval", DEFAULT_SCRAPE_INTERVAL)
    job["static_configs"] = [{"targets": targets}]
    return job


def exporter_and_tfserving_jobs(exporter, simulator, interval: str = "1s") -> list[dict]:
    """The two jobs end-to-end tests need: our exporter (job ``exporter``) and TF Serving's
    own page on the simulator's REST port (job ``tfserving``).

    ``exporter`` is a ``tests.conftest.ExporterHandle``, ``simulator`` a ``SimulatorHandle``.
    The timeout equals the interval, as Prometheus allows at most that.
    """
    return [
        {"job_name": "exporter", "targets": [f"{LOCAL_HOST}:{exporter.running.port}"],
         "metrics_path": "/metrics", "scrape_interval": interval, "scrape_timeout": interval},
        {"job_name": "tfserving", "targets": [f"{LOCAL_HOST}:{simulator.rest_port}"],
         "metrics_path": TFSERVING_PAGE, "scrape_interval": interval,
         "scrape_timeout": interval},
    ]


def prometheus_config(jobs: Sequence[dict], rule_files: Sequence[str] = (),
                      evaluation_interval: str | None = None) -> dict:
    global_section: dict[str, Any] = {"scrape_interval": DEFAULT_SCRAPE_INTERVAL}
    if evaluation_interval:
        global_section["evaluation_interval"] = evaluation_interval
    config: dict[str, Any] = {"global": global_section,
                              "scrape_configs": [scrape_config(job) for job in jobs]}
    if rule_files:
        config["rule_files"] = [os.path.abspath(path) for path in rule_files]
    return config


class PrometheusServer:
    """One Prometheus process with its own config, TSDB directory and log file."""

    def __init__(self, binary: str, workdir: str, jobs: Sequence[dict],
                 rule_files: Sequence[str] = (), evaluation_interval: str | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.config_path = os.path.join(workdir, "prometheus.yml")
        self.data_dir = os.path.join(workdir, "data")
        self.log_path = os.path.join(workdir, "prometheus.log")
        self.port = 0
        self.url = ""
        self._process: subprocess.Popen | None = None
        self._log = None
        self.write_config(jobs, rule_files, evaluation_interval)
        # Bypass HTTP(S)_PROXY from the environment: all our traffic is to 127.0.0.1.
        self._http = requests.Session()
        self._http.trust_env = False

    # ---- lifecycle -------------------------------------------------------------------------

    def write_config(self, jobs: Sequence[dict], rule_files: Sequence[str] = (),
                     evaluation_interval: str | None = None) -> None:
        """(Re)write prometheus.yml; call ``reload()`` afterwards if the server is running."""
        config = prometheus_config(jobs, rule_files, evaluation_interval)
        with open(self.config_path, "w", encoding="utf-8") as handle:
            yaml.safe_dump(config, handle, sort_keys=False)

    def start(self, timeout: float = STARTUP_TIMEOUT_SECONDS) -> "PrometheusServer":
        self.port = free_port()
        self.url = f"http://{LOCAL_HOST}:{self.port}"
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={LOCAL_HOST}:{self.port}",
            "--web.enable-lifecycle",
            # A test never needs more than a few minutes of data.
            "--storage.tsdb.retention.time=1h",
            # Queries run one or two at a time; keep the pool small on 2-core machines.
            "--query.max-concurrency=2",
            "--log.level=info",
        ]
        env = dict(os.environ)
        # Go would start as many OS threads as it sees cores; tests share 2 cores with the
        # simulator, the exporter and pytest.
        env.setdefault("GOMAXPROCS", "2")
        self._log = open(self.log_path, "ab")
        self._process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=self.workdir)
        try:
            outcome = self._wait(self._ready_or_exited, timeout, "Prometheus /-/ready")
            if outcome == "exited":
                raise PrometheusError(f"Prometheus exited with code {self._process.returncode}"
                                      f"{self._log_excerpt()}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready_or_exited(self) -> str | None:
        # An exited process (bad config, port taken) ends the wait at once: waiting longer
        # cannot help. wait_until treats exceptions as "not yet", so report it as a value.
        if self._process.poll() is not None:
            return "exited"
        if self._http.get(self.url + "/-/ready", timeout=HTTP_TIMEOUT_SECONDS).ok:
            return "ready"
        return None

    def reload(self) -> None:
        """Ask Prometheus to re-read its config and rule files (needs --web.enable-lifecycle)."""
        reply = self._http.post(self.url + "/-/reload", timeout=HTTP_TIMEOUT_SECONDS)
        if not reply.ok:
            raise PrometheusError(f"reload failed: HTTP {reply.status_code} {reply.text}"
                                  f"{self._log_excerpt()}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._http.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ---- diagnostics -----------------------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                text = handle.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _log_excerpt(self) -> str:
        return f"\n--- last lines of {self.log_path} ---\n{self.log_tail()}"

    def _wait(self, predicate: Callable[[], Any], timeout: float, message: str,
              detail: Callable[[], str] | None = None):
        """``wait_until`` whose failure message carries the last state and the log tail."""
        try:
            return wait_until(predicate, timeout=timeout, interval=0.1, message=message)
        except PrometheusError:
            raise
        except AssertionError as err:
            extra = ""
            if detail is not None:
                try:
                    extra = f"\nlast seen: {detail()}"
                except Exception as detail_err:  # noqa: BLE001 - best-effort diagnostics
                    extra = f"\nlast seen: unavailable ({detail_err!r})"
            raise PrometheusError(f"{err}{extra}{self._log_excerpt()}") from None

    # ---- HTTP API --------------------------------------------------------------------------

    def api(self, path: str, **params) -> Any:
        """``data`` of a successful ``/api/v1/<path>`` answer; raises on error answers."""
        reply = self._http.get(f"{self.url}/api/v1/{path}", params=params,
                               timeout=HTTP_TIMEOUT_SECONDS)
        try:
            body = reply.json()
        except ValueError:
            body = {}
        if reply.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"GET /api/v1/{path} {params}: HTTP {reply.status_code} "
                                  f"{body.get('errorType', '')} {body.get('error', reply.text)}")
        return body["data"]

    def targets(self) -> list[dict]:
        return self.api("targets", state="active")["activeTargets"]

    def wait_for_targets_up(self, jobs: Iterable[str], timeout: float = 30) -> list[dict]:
        """Wait until every named job has targets and all of them are ``up``.

        New targets only show up after Prometheus' scrape manager's next tick (about 5 s), so
        expect this to take that long even when everything is healthy.
        """
        wanted = set(jobs)

        def all_up():
            by_job: dict[str, list[dict]] = {}
            for target in self.targets():
                by_job.setdefault(target["labels"].get("job", ""), []).append(target)
            if all(by_job.get(job) and all(t["health"] == "up" for t in by_job[job])
                   for job in wanted):
                return [t for job in wanted for t in by_job[job]]
            return None

        def describe() -> str:
            return "; ".join(f"{t['labels'].get('job')} {t['scrapeUrl']} health={t['health']} "
                             f"error={t.get('lastError')!r}" for t in self.targets()) or "none"

        return self._wait(all_up, timeout, f"targets of {sorted(wanted)} to be up", describe)

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """Instant query; the ``result`` list (``[{"metric": {...}, "value": [t, "v"]}]``).

        A scalar or string result is returned as one entry with an empty ``metric``.
        """
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", **params)
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        if data["resultType"] != "vector":
            raise PrometheusError(f"{promql!r} gave a {data['resultType']}, not an instant vector")
        return data["result"]

    def query_value(self, promql: str, at: float | None = None) -> float | None:
        """The single value of a query; None when it has no result; error when it has several."""
        result = self.query(promql, at)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} has {len(result)} series, expected one: "
                                  f"{[r['metric'] for r in result]}")
        return float(result[0]["value"][1])  # Prometheus writes "NaN", "+Inf" as strings

    def wait_for_query(self, promql: str, predicate: Callable[[list[dict]], Any],
                       timeout: float = 30) -> list[dict]:
        """Poll ``query(promql)`` until ``predicate(result)`` is truthy; return that result."""
        last: list = []

        def attempt():
            last[:] = [self.query(promql)]
            return last[0] if predicate(last[0]) else None

        return self._wait(attempt, timeout, f"query {promql!r} to satisfy the predicate",
                          lambda: repr(last[0] if last else "no answer"))

    def wait_for_value(self, promql: str, predicate: Callable[[float | None], Any],
                       timeout: float = 30) -> float | None:
        """Poll ``query_value(promql)`` until ``predicate(value)`` is truthy; return the value."""
        last: list = []

        def attempt():
            value = self.query_value(promql)
            last[:] = [value]
            return (value,) if predicate(value) else None  # a tuple, so 0.0 counts as found

        return self._wait(attempt, timeout, f"value of {promql!r} to satisfy the predicate",
                          lambda: repr(last[0] if last else "no answer"))[0]

    def alerts(self) -> list[dict]:
        return self.api("alerts")["alerts"]

    def wait_for_alert(self, alertname: str, state: str = "firing",
                       timeout: float = 30) -> list[dict]:
        """Wait until alerts called ``alertname`` are in ``state`` (pending, firing)."""
        def matching():
            return [alert for alert in self.alerts()
                    if alert["labels"].get("alertname") == alertname and alert["state"] == state]

        return self._wait(matching, timeout, f"alert {alertname} to be {state}",
                          lambda: repr(self.alerts()))

    def rules(self) -> list[dict]:
        """Rule groups (``[{"name", "file", "rules": [...]}]``) as Prometheus loaded them."""
        return self.api("rules")["groups"]


@pytest.fixture
def prometheus_for(tmp_path, prometheus_binary):
    """Factory fixture: ``prometheus_for(jobs, rule_files=(), evaluation_interval=None)``
    starts a Prometheus scraping ``jobs`` and returns it running; all are stopped at teardown.

    Through ``prometheus_binary`` (tests/conftest.py) every test using it runs on Prometheus
    2.x and 3.x (ids ``prometheus2``, ``prometheus3``).
    """
    started: list[PrometheusServer] = []

    def start(jobs: Sequence[dict], rule_files: Sequence[str] = (),
              evaluation_interval: str | None = None) -> PrometheusServer:
        workdir = str(tmp_path / f"prometheus-{len(started)}")
        server = PrometheusServer(prometheus_binary, workdir, jobs, rule_files,
                                  evaluation_interval)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
