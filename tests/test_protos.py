"""The proto loader must give TF Serving's messages without loading TensorFlow's runtime."""

import json
import subprocess
import sys

PROBE = r"""
import json, sys, time
started = time.monotonic()
from tfserving_wire import protos
protos.load_all()
request = protos.predict_pb2.PredictRequest()
request.model_spec.name = "half_plus_two"
request.model_spec.version.value = 123
request.inputs["x"].dtype = protos.types_pb2.DT_FLOAT
request.inputs["x"].tensor_shape.dim.add().size = 3
request.inputs["x"].float_val.extend([1.0, 2.0, 5.0])
decoded = protos.predict_pb2.PredictRequest.FromString(request.SerializeToString())
maps = open("/proc/self/maps").read()
print(json.dumps({
    "equal": decoded == request,
    "values": list(decoded.inputs["x"].float_val),
    "version": decoded.model_spec.version.value,
    "libtensorflow_mapped": [l.split()[-1] for l in maps.splitlines() if "libtensorflow" in l],
    "tensorflow_init_ran": hasattr(sys.modules["tensorflow"], "__version__"),
    "seconds": time.monotonic() - started,
}))
"""


def run_probe(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_protos_load_without_tensorflow_runtime_and_round_trip():
    result = run_probe(PROBE)
    assert result["equal"] is True
    assert result["values"] == [1.0, 2.0, 5.0]
    assert result["version"] == 123
    assert result["libtensorflow_mapped"] == []
    assert result["tensorflow_init_ran"] is False


def test_protos_reuse_an_already_imported_tensorflow_package():
    # A host process that registered "tensorflow" first (here: an empty stand-in package
    # pointing at the same directory) must not be replaced.
    code = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('tensorflow')\n"
        "pkg = types.ModuleType('tensorflow'); pkg.__path__ = list(spec.submodule_search_locations)\n"
        "pkg.marker = 'host'; sys.modules['tensorflow'] = pkg\n" + PROBE.replace(
            '"seconds"', '"marker": sys.modules["tensorflow"].marker, "seconds"'))
    result = run_probe(code)
    assert result["marker"] == "host"
    assert result["equal"] is True


def test_missing_protos_give_a_clear_error(tmp_path):
    # An interpreter that cannot see site-packages has no TF protos at all.
    code = (
        "import sys; sys.path = [p for p in sys.path if 'site-packages' not in p]\n"
        f"sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent.parent)!r})\n"
        "from tfserving_wire import protos\n"
        "try:\n    protos.predict_pb2.PredictRequest\nexcept protos.ProtosUnavailable as e:\n"
        "    print(e)\n")
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert "tensorflow" in out.stdout, out.stderr
