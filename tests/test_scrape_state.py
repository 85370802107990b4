"""Model status is scrape state: fetched once per scrape by whichever collector asks first, the
same answer for every reader, whatever the collectors' order; and the loaded-versions helper
that the metadata collector and the canary runner share."""

from __future__ import annotations

import concurrent.futures
import threading
from collections import Counter

import pytest

from exporter.canary.results import ResultStore, RunOutcome
from exporter.collection import Collection, status_protocol
from exporter.collectors.base import Limiter
from exporter.collectors.canary import CanaryCollector
from exporter.collectors.metadata import MetadataCollector
from exporter.collectors.status import StatusCollector
from exporter.scrape import Scrape
from exporter.selfmetrics import SelfMetrics
from exporter.tfserving.deadline import Deadline
from exporter.tfserving.grpc_client import GrpcClient
from exporter.tfserving.loaded_versions import LoadedSignatures
from exporter.tfserving.rest_client import RestClient
from exporter.tfserving.types import Signature, SignatureMap, TensorSpec
from tests.hostile_fakes import RawGrpcServer, grpc_metadata_reply, grpc_status_reply
from tfserving_simulator.faults import FaultRule

MODELS = ["half_plus_two", "image_classifier", "no_such_model"]
PAGE = "/monitoring/prometheus/metrics"
# Timings differ from one scrape to the next; everything else must be equal.
TIMINGS = {"tfserving_exporter_collector_duration_seconds"}


class Calls:
    """Counts the clients' calls by (protocol, api), through the clients' own observer hook."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter = Counter()

    def __call__(self, protocol: str, api: str, seconds: float) -> None:
        with self._lock:
            self.counts[protocol, api] += 1


@pytest.fixture
def calls():
    return Calls()


@pytest.fixture
def connect(simulator, calls):
    """Fresh clients to the simulator, their calls counted in ``calls``."""
    return lambda: {
        "grpc": GrpcClient(f"127.0.0.1:{simulator.grpc_port}", observe=calls),
        "rest": RestClient(f"http://127.0.0.1:{simulator.rest_port}", observe=calls)}


@pytest.fixture
def store():
    """Canary results as the runner leaves them: version 123 is loaded, version 7 is not."""
    results = ResultStore()
    results.set_golden_examples({"half_plus_two": 8, "image_classifier": 4})
    for model, version, reason in (("half_plus_two", 123, None), ("half_plus_two", 7, "error"),
                                   ("image_classifier", 1, "mismatch")):
        results.record(model, version, RunOutcome(reason=reason, detail="", finished_at=1e9,
                                                  duration=0.02, protocol="grpc",
                                                  comparison=None))
    return results


def _collectors(kinds: list[str], store: ResultStore, protocol: str = "grpc",
                dropped=None) -> list:
    dropped = dropped or SelfMetrics().dropped
    versions = Limiter(dropped, "version", 10)
    built = {
        "status": lambda: StatusCollector(protocol, versions),
        "metadata": lambda: MetadataCollector(protocol, protocol, versions,
                                              Limiter(dropped, "signature", 100),
                                              Limiter(dropped, "tensor", 100)),
        "canary": lambda: CanaryCollector(store),
    }
    return [built[kind]() for kind in kinds]


def _scrape(clients: dict, collectors: list, models=MODELS, dropped=lambda kind, n: None):
    """Samples of one collection over ``clients`` (closed after it), timings left out."""
    collection = Collection(clients, collectors, ping_paths={"rest": (PAGE,)},
                            models=lambda: list(models), dropped=dropped)
    try:
        families = collection.collect(Deadline.after(10), 10)
    finally:
        collection.close()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in families if family.name not in TIMINGS for sample in family.samples}


def _of(samples: dict, prefix: str) -> dict:
    return {key: value for key, value in samples.items() if key[0].startswith(prefix)}


def _versions(samples: dict, name: str) -> set[tuple[str, str]]:
    return {(dict(labels)["model"], dict(labels)["version"])
            for (sample, labels) in samples if sample == name}


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_order_of_the_collectors_does_not_change_the_page(simulator, connect, store,
                                                              protocol):
    # One model whose status fails: every reader sees the same failure.
    simulator.simulator.faults.add(FaultRule(model="image_classifier",
                                             operations=frozenset({"status"}),
                                             error_code="INTERNAL"))
    normal = _scrape(connect(), _collectors(["status", "metadata", "canary"], store, protocol))
    reversed_ = _scrape(connect(), _collectors(["canary", "metadata", "status"], store, protocol))
    assert reversed_ == normal

    assert normal[("tfserving_model_serving_version",
                   frozenset({("model", "half_plus_two")}))] == 123
    assert normal[("tfserving_model_available_versions",
                   frozenset({("model", "no_such_model")}))] == 0
    assert _versions(normal, "tfserving_model_signature_info") == {("half_plus_two", "123")}
    # Version 7 is not loaded: hidden. image_classifier's status failed: its results stay.
    assert _versions(normal, "tfserving_canary_success") == {("half_plus_two", "123"),
                                                             ("image_classifier", "1")}
    success = {dict(labels)["collector"]: value for (name, labels), value in normal.items()
               if name == "tfserving_exporter_collector_success"}
    assert success == {"status": 0, "metadata": 0, "canary": 1}
    assert normal[("tfserving_up", frozenset({("protocol", protocol)}))] == 1


def test_the_canary_collector_alone_reads_model_status_too(connect, store, calls):
    alone = _scrape(connect(), _collectors(["canary"], store))
    everything = _scrape(connect(), _collectors(["status", "metadata", "canary"], store))
    assert _of(alone, "tfserving_canary_") == _of(everything, "tfserving_canary_")
    assert ("half_plus_two", "7") not in _versions(alone, "tfserving_canary_success")
    assert _of(alone, "tfserving_up") == _of(everything, "tfserving_up")
    # No collector names a protocol: the first configured one.
    assert calls.counts["grpc", "model_status"] == 2 * len(MODELS)
    assert calls.counts["rest", "model_status"] == 0


def test_the_metadata_collector_alone_gets_the_same_signatures(connect, store, calls):
    alone = _scrape(connect(), _collectors(["metadata"], store, "rest"))
    everything = _scrape(connect(), _collectors(["status", "metadata", "canary"], store, "rest"))
    assert _of(alone, "tfserving_model_signature") == _of(everything, "tfserving_model_signature")
    assert _versions(alone, "tfserving_model_signature_info") == {("half_plus_two", "123"),
                                                                  ("image_classifier", "1")}
    assert calls.counts["rest", "model_status"] == 2 * len(MODELS)
    assert calls.counts["grpc", "model_status"] == 0


def test_readers_asking_at_once_share_one_fetch_per_model(connect, calls):
    clients = connect()
    executors = {protocol: concurrent.futures.ThreadPoolExecutor(max_workers=4)
                 for protocol in clients}
    scrape = Scrape(Deadline.after(10), clients, executors, MODELS, status_protocol="rest")
    start = threading.Barrier(6)

    def read():
        start.wait(timeout=10)
        return scrape.model_statuses()

    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as readers:
            answers = list(readers.map(lambda _: read(), range(6)))
    finally:
        for executor in executors.values():
            executor.shutdown(wait=True)
        for client in clients.values():
            client.close()
    assert all(answer is answers[0] for answer in answers)
    assert list(answers[0]) == MODELS
    assert calls.counts["rest", "model_status"] == len(MODELS)
    assert scrape.reached == {"rest": True}


def test_duplicate_versions_are_counted_once_per_scrape_not_per_reader(store):
    server = RawGrpcServer()
    server.replies.status = lambda request: grpc_status_reply(
        [(3, "AVAILABLE"), (3, "AVAILABLE"), (3, "UNLOADING")])
    server.replies.metadata = lambda request: grpc_metadata_reply("m", 1)
    counted: Counter = Counter()
    try:
        samples = _scrape({"grpc": GrpcClient(server.address)},
                          _collectors(["status", "metadata", "canary"], store),
                          models=["m"], dropped=lambda kind, n: counted.update({kind: n}))
    finally:
        server.close()
    assert counted["duplicate_version"] == 2
    assert samples[("tfserving_model_version_state", frozenset(
        {("model", "m"), ("version", "3"), ("state", "UNLOADING")}))] == 1


def test_collectors_naming_different_status_protocols_are_refused(store):
    dropped = SelfMetrics().dropped
    versions = Limiter(dropped, "version", 10)
    clients = {"grpc": None, "rest": None}
    assert status_protocol(_collectors(["canary"], store), clients) == "grpc"
    assert status_protocol(_collectors(["canary"], store), {"rest": None}) == "rest"
    assert status_protocol([CanaryCollector(store), StatusCollector("rest", versions)],
                           clients) == "rest"
    with pytest.raises(ValueError, match="grpc and rest"):
        status_protocol([StatusCollector("rest", versions),
                         MetadataCollector("grpc", "grpc", versions, versions, versions)],
                        clients)


# ---- the loaded versions' signatures, shared by the metadata collector and the runner --------

def _signatures(tensors: int) -> SignatureMap:
    spec = TensorSpec("x", "DT_FLOAT", (-1,))
    return SignatureMap({"serving_default": Signature("serving_default", "predict",
                                                      (spec,) * tensors, ())})


def test_loaded_signatures_are_fetched_once_and_forgotten_per_model():
    cache = LoadedSignatures(max_tensors=100)
    fetched: Counter = Counter()

    def fetch(key):
        def run():
            fetched[key] += 1
            return _signatures(1)
        return run

    for _ in range(3):
        for key in (("a", 1), ("a", 2), ("b", 1)):
            cache.get(key, fetch(key))
    assert set(fetched.values()) == {1}

    cache.keep_only({("a", 2)}, {"a"})  # one model's cycle: the other model's entry stays
    assert len(cache) == 2
    cache.get(("b", 1), fetch(("b", 1)))
    cache.get(("a", 1), fetch(("a", 1)))
    assert fetched[("b", 1)] == 1 and fetched[("a", 1)] == 2

    cache.keep_only({("a", 1)})  # every model
    assert len(cache) == 1


def test_loaded_signatures_hold_at_most_their_tensors():
    cache = LoadedSignatures(max_tensors=10)
    fetches = Counter()

    def fetch(key, tensors):
        def run():
            fetches[key] += 1
            return _signatures(tensors)
        return run

    cache.get(("a", 1), fetch(("a", 1), 8))
    for _ in range(2):  # does not fit next to the first: fetched every time, still answered
        assert len(cache.get(("a", 2), fetch(("a", 2), 3))["serving_default"].inputs) == 3
    assert fetches[("a", 2)] == 2 and len(cache) == 1
    cache.keep_only({("a", 2)})  # the first left: its tensors are free again
    cache.get(("a", 2), fetch(("a", 2), 3))
    cache.get(("a", 2), fetch(("a", 2), 3))
    assert fetches[("a", 2)] == 3 and len(cache) == 1
