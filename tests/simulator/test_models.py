"""Model programs and the servable, checked against TF Serving's canonical pairs (§6.3)."""

import json

import numpy as np
import pytest

from tfserving_simulator import demo_models
from tfserving_simulator.errors import ServingError
from tfserving_simulator.faults import FaultRule, Faults
from tfserving_simulator.models import (HalfPlusTwo, ImageClassifier, Servable, TensorInfo,
                                       load_program, read_model_spec)
from tfserving_simulator.tf_metrics import ServingMetrics
from tfserving_wire import protos


def f32(values):
    return np.asarray(values, dtype=np.float32)


@pytest.fixture
def half_plus_two():
    return Servable("half_plus_two", 123, "/models/half_plus_two/00000123", HalfPlusTwo())


def test_half_plus_two_has_exactly_the_five_signatures_of_version_123():
    signatures = HalfPlusTwo().signatures
    examples = TensorInfo("tf_example:0", "DT_STRING", None)
    assert {name: (s.method_name, s.inputs, s.outputs) for name, s in signatures.items()} == {
        "serving_default": ("tensorflow/serving/predict",
                            {"x": TensorInfo("x:0", "DT_FLOAT", (-1, 1))},
                            {"y": TensorInfo("y:0", "DT_FLOAT", (-1, 1))}),
        "classify_x_to_y": ("tensorflow/serving/classify", {"inputs": examples},
                            {"scores": TensorInfo("y:0", "DT_FLOAT", (-1, 1))}),
        "regress_x_to_y": ("tensorflow/serving/regress", {"inputs": examples},
                           {"outputs": TensorInfo("y:0", "DT_FLOAT", (-1, 1))}),
        "regress_x_to_y2": ("tensorflow/serving/regress", {"inputs": examples},
                            {"outputs": TensorInfo("y2:0", "DT_FLOAT", (-1, 1))}),
        "regress_x2_to_y3": ("tensorflow/serving/regress",
                             {"inputs": TensorInfo("x2:0", "DT_FLOAT", (-1, 1))},
                             {"outputs": TensorInfo("y3:0", "DT_FLOAT", (-1, 1))}),
    }


@pytest.mark.parametrize("x, y", [
    ([1.0, 2.0, 5.0], [2.5, 3.0, 4.5]),
    ([2.0, 3.0, 4.0], [3.0, 3.5, 4.0]),
    ([[1.0, 2.0], [3.0, 4.0]], [[2.5, 3.0], [3.5, 4.0]]),
    ([[2.0]], [[3.0]]),
])
def test_predict_is_elementwise_half_plus_two(half_plus_two, x, y):
    out = half_plus_two.predict("serving_default", {"x": f32(x)})
    assert list(out) == ["y"]
    assert out["y"].dtype == np.float32
    assert out["y"].tolist() == y


def test_empty_signature_name_means_serving_default(half_plus_two):
    assert half_plus_two.predict("", {"x": f32([2.0])}, output_filter=["y"])["y"].tolist() == [3.0]


@pytest.mark.parametrize("signature, x, expected", [
    ("regress_x_to_y", 2.0, 3.0), ("regress_x_to_y", 80.0, 42.0), ("regress_x_to_y2", 2.0, 4.0),
])
def test_regress_canonical_pairs(half_plus_two, signature, x, expected):
    assert half_plus_two.regress(signature, [{"x": ("float", [x])}], None) == [expected]


@pytest.mark.parametrize("x, score", [(2.0, 3.0), (20.0, 12.0)])
def test_classify_without_classes_output_gives_empty_labels(half_plus_two, x, score):
    assert half_plus_two.classify("classify_x_to_y", [{"x": ("float", [x])}], None) == \
        [[("", score)]]


def test_y3_uses_x2_with_its_default(half_plus_two):
    assert half_plus_two.predict("regress_x2_to_y3", {"inputs": f32([[4.0]])})["outputs"] \
        .tolist() == [[5.0]]


def test_context_features_merge_into_examples_and_examples_win(half_plus_two):
    examples = [{}, {"x": ("float", [4.0])}]
    assert half_plus_two.regress("regress_x_to_y", examples, {"x": ("float", [2.0])}) == [3.0, 4.0]


def test_int64_feature_is_rejected_by_the_float_parser(half_plus_two):
    with pytest.raises(ServingError) as caught:
        half_plus_two.regress("regress_x_to_y", [{"x": ("float", [1.0])}, {"x": ("int64", [2])}],
                              None)
    assert caught.value.code == "INVALID_ARGUMENT"
    assert caught.value.message == ("Name: <unknown>, Key: x, Index: 1.  Data types don't match. "
                                    "Data type: int64 but expected type: float")


def test_missing_required_feature(half_plus_two):
    with pytest.raises(ServingError, match="Feature: x \\(data type: float\\) is required"):
        half_plus_two.classify("classify_x_to_y", [{"x2": ("float", [1.0])}], None)


def test_regress_on_a_float_input_signature_fails_like_tf(half_plus_two):
    with pytest.raises(ServingError, match="Expects arg\\[0\\] to be float but string is provided"):
        half_plus_two.regress("regress_x2_to_y3", [{"x2": ("float", [1.0])}], None)


def test_regress_on_predict_signature_has_no_regression_inputs(half_plus_two):
    with pytest.raises(ServingError, match="^INVALID_ARGUMENT: No regression inputs found"):
        half_plus_two.regress("serving_default", [{"x": ("float", [1.0])}], None)


def test_predict_feed_of_wrong_dtype_is_invalid_argument(half_plus_two):
    with pytest.raises(ServingError) as caught:
        half_plus_two.predict("serving_default", {"x": np.array([1.0], dtype=np.float64)})
    assert (caught.value.code, caught.value.message) == (
        "INVALID_ARGUMENT", "Expects arg[0] to be float but double is provided")


def test_predict_on_example_signature_parses_serialized_tf_examples(half_plus_two):
    example = protos.example_pb2.Example()
    example.features.feature["x"].float_list.value.append(20.0)
    out = half_plus_two.predict("classify_x_to_y",
                                {"inputs": np.array([example.SerializeToString()], dtype=object)})
    assert out["scores"].tolist() == [[12.0]]


def test_runtime_latency_is_recorded_per_api_and_output_faults_apply():
    metrics = ServingMetrics()
    faults = Faults()
    servable = Servable("m", 1, "/m/1", HalfPlusTwo(), metrics=metrics, faults=faults)
    servable.predict("serving_default", {"x": f32([1.0])})
    servable.regress("regress_x_to_y", [{"x": ("float", [1.0])}], None)
    assert metrics.runtime_latency.snapshot(("m", "Predict", "TF1"))[2] == 1
    assert metrics.runtime_latency.snapshot(("m", "Regress", "TF1"))[2] == 1
    faults.add(FaultRule(model="m", nan_outputs=True))
    assert np.isnan(servable.predict("serving_default", {"x": f32([1.0])})["y"]).all()


# --- image classifier ---

def images(count, seed=7):
    return np.random.default_rng(seed).random((count, 32, 32, 3), dtype=np.float32)


def test_image_classifier_signature():
    signature = ImageClassifier().signatures["serving_default"]
    assert signature.method_name == "tensorflow/serving/predict"
    assert signature.inputs == {"image": TensorInfo("image:0", "DT_FLOAT", (-1, 32, 32, 3))}
    assert signature.outputs == {
        "probabilities": TensorInfo("probabilities:0", "DT_FLOAT", (-1, 10)),
        "classes": TensorInfo("classes:0", "DT_INT64", (-1,)),
    }


def test_image_classifier_outputs_softmax_and_argmax_deterministically():
    servable = Servable("image_classifier", 1, "/p/1", ImageClassifier(seed=0))
    out = servable.predict("serving_default", {"image": images(64)})
    probabilities, classes = out["probabilities"], out["classes"]
    assert probabilities.shape == (64, 10) and classes.shape == (64,)
    assert classes.dtype == np.int64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert (classes == probabilities.argmax(axis=1)).all()
    again = Servable("image_classifier", 1, "/p/1", ImageClassifier(seed=0))
    np.testing.assert_array_equal(
        again.predict("", {"image": images(64)})["probabilities"], probabilities)
    other_seed = ImageClassifier(seed=1).run({"image:0": images(64)}, ["probabilities:0"])
    assert not np.allclose(other_seed["probabilities:0"], probabilities)


def test_weight_noise_flips_some_but_not_all_predictions():
    batch = images(200)
    base = ImageClassifier(seed=0).run({"image:0": batch}, ["classes:0"])["classes:0"]
    noisy = ImageClassifier(seed=0, weight_noise=0.5).run({"image:0": batch},
                                                          ["classes:0"])["classes:0"]
    changed = int((base != noisy).sum())
    assert 0 < changed < len(batch)


@pytest.mark.parametrize("shape", [(1, 28, 28, 3), (32, 32, 3), (2, 32, 32, 1)])
def test_image_classifier_rejects_wrong_shapes(shape):
    servable = Servable("c", 1, "/c/1", ImageClassifier())
    with pytest.raises(ServingError) as caught:
        servable.predict("serving_default", {"image": np.zeros(shape, np.float32)})
    assert caught.value.code == "INVALID_ARGUMENT"
    assert "is not compatible with expected shape [?,32,32,3]" in caught.value.message


# --- loading version directories ---

def test_load_program_uses_params_from_simulator_model_json(tmp_path):
    path = demo_models.write_half_plus_two(str(tmp_path / "m"), 1, a=2.0, b=1.0)
    program = load_program(path)
    assert program.run({"x:0": f32([3.0])}, ["y:0"])["y:0"].tolist() == [7.0]


def test_missing_saved_model_gives_tf_servings_not_found_text(tmp_path):
    path = demo_models.write_broken_version(str(tmp_path / "m"), 2)
    with pytest.raises(ServingError) as caught:
        load_program(path)
    assert caught.value.code == "NOT_FOUND"
    assert caught.value.message == (
        "Specified file path does not appear to contain a SavedModel bundle (should have a file "
        f"called `saved_model.pb`)\nSpecified file path: {path}")


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "cannot read"),
    ('{"format": 1, "kind": "resnet"}', "'kind' must be one of"),
    ('{"format": 2, "kind": "half_plus_two"}', "'format' must be 1"),
    ('{"format": 1, "kind": "half_plus_two", "params": {"d": 1}}', "unknown params ['d']"),
    ('{"format": 1, "kind": "half_plus_two", "extra": 1}', "unknown keys ['extra']"),
    ('{"format": 1, "kind": "half_plus_two", "load_seconds": -1}', "'load_seconds'"),
    ('{"format": 1, "kind": "half_plus_two", "fail_load": {"code": "NOPE"}}', "fail_load.code"),
])
def test_bad_simulator_model_json_names_the_file(tmp_path, content, fragment):
    version_dir = tmp_path / "1"
    version_dir.mkdir()
    (version_dir / "saved_model.pb").write_bytes(b"")
    (version_dir / "simulator_model.json").write_text(content)
    with pytest.raises(ServingError) as caught:
        load_program(str(version_dir))
    assert str(version_dir / "simulator_model.json") in caught.value.message
    assert fragment in caught.value.message


def test_fail_load_raises_the_configured_error(tmp_path):
    path = demo_models.write_half_plus_two(
        str(tmp_path / "m"), 1, fail_load={"code": "INTERNAL", "message": "disk on fire"},
        load_seconds=0.5)
    assert read_model_spec(path).load_seconds == 0.5
    with pytest.raises(ServingError) as caught:
        load_program(path)
    assert (caught.value.code, caught.value.message) == ("INTERNAL", "disk on fire")


def test_demo_models_layout(tmp_path):
    configs = demo_models.write_demo_models(str(tmp_path))
    assert [(c.name, c.base_path) for c in configs] == [
        ("half_plus_two", str(tmp_path / "half_plus_two")),
        ("image_classifier", str(tmp_path / "image_classifier"))]
    assert sorted(p.name for p in (tmp_path / "half_plus_two").iterdir()) == ["00000123"]
    assert sorted(p.name for p in (tmp_path / "image_classifier").iterdir()) == ["1"]
    spec = json.loads((tmp_path / "image_classifier" / "1" / "simulator_model.json").read_text())
    assert spec["kind"] == "image_classifier" and spec["params"]["seed"] == 0
    with pytest.raises(FileExistsError):
        demo_models.write_image_classifier(str(tmp_path / "image_classifier"), 1)
    assert sorted(p.name for p in (tmp_path / "image_classifier").iterdir()) == ["1"]
