"""Real SavedModels written with TensorFlow: the demo's two models, and variants of them.

- ``write_half_plus_two``: y = a·x + b with the five signatures of TF Serving's own test model
  (``servables/tensorflow/testdata/saved_model_half_plus_two_cpu``): ``serving_default``
  (predict x -> y), ``classify_x_to_y``, ``regress_x_to_y``, ``regress_x_to_y2`` (a·x + c),
  all three on serialized tf.Examples, and ``regress_x2_to_y3`` (a·x2 + c, a float input).
  Built as a TF1 graph, as that model is, so the classify and regress method names are real.
- ``write_image_classifier``: a small Keras CNN on 32×32×3 images with 10 classes (the
  CIFAR-10 shape), trained briefly on images it generates, so another ``seed`` (a
  "retrained" model) moves its answers. Its ``serving_default`` takes ``image`` and returns
  ``probabilities`` (float) and ``classes`` (int64 arg-max). Exported with Keras's
  ``ExportArchive`` (what ``model.export`` uses): a Keras 3 model inside a plain ``tf.Module``
  given to ``tf.saved_model.save`` restores its variables under other names than the serving
  function reads, so TF Serving answers every Predict with FAILED_PRECONDITION "Could not find
  variable ..." (tensorflow/serving#2250, tensorflow/tensorflow#72963).

TensorFlow is imported inside each function: importing this module costs nothing. Versions are
written beside their final name and renamed into place, so a polling server never loads half
a SavedModel.
"""

from __future__ import annotations


from tfserving_simulator.demo_models import write_version_dir

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
TRAINING_IMAGES = 512


def write_half_plus_two(version_dir: str, *, a: float = 0.5, b: float = 2.0,
                        c: float = 3.0) -> str:
    """TF Serving's half_plus_two test model with these coefficients, at ``version_dir``."""
    import tensorflow as tf

    v1 = tf.compat.v1
    signatures = v1.saved_model.signature_def_utils
    tensor_info = v1.saved_model.utils.build_tensor_info

    def save(path: str) -> None:
        with tf.Graph().as_default():
            serialized = v1.placeholder(tf.string, name="tf_example")
            parsed = v1.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
            # ParseExampleV2 on a rank-unknown input infers no shape; TF Serving's model
            # (TF1's ParseExample) has x, y and y2 as [-1, 1].
            parsed["x"].set_shape([None, 1])
            x = tf.identity(parsed["x"], name="x")
            x2 = v1.placeholder(tf.float32, [None, 1], name="x2")
            slope, offset, offset2 = (v1.Variable(value, name=name)
                                      for value, name in ((a, "a"), (b, "b"), (c, "c")))
            y = tf.add(slope * x, offset, name="y")
            y2 = tf.add(slope * x, offset2, name="y2")
            y3 = tf.add(slope * x2, offset2, name="y3")
            signature_map = {
                "serving_default": signatures.predict_signature_def({"x": x}, {"y": y}),
                "classify_x_to_y": signatures.classification_signature_def(serialized, None, y),
                "regress_x_to_y": signatures.regression_signature_def(serialized, y),
                "regress_x_to_y2": signatures.regression_signature_def(serialized, y2),
                # regression_signature_def insists on serialized examples; this one is a float.
                "regress_x2_to_y3": signatures.build_signature_def(
                    {"inputs": tensor_info(x2)}, {"outputs": tensor_info(y3)},
                    v1.saved_model.signature_constants.REGRESS_METHOD_NAME),
            }
            with v1.Session() as session:
                session.run(v1.global_variables_initializer())
                builder = v1.saved_model.Builder(path)
                builder.add_meta_graph_and_variables(
                    session, [v1.saved_model.tag_constants.SERVING],
                    signature_def_map=signature_map, strip_default_attrs=True)
                builder.save()

    return write_version_dir(version_dir, save)


def training_data(seed: int):
    """Images and their labels: each class has a colour of its own, each image is its class's
    colour under heavy pixel noise. Learnable in a few epochs, never perfectly, so models from
    different seeds disagree on the hard images (and on anything off this distribution)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, TRAINING_IMAGES)
    colours = np.random.default_rng(1234).random((NUM_CLASSES, 3), dtype=np.float32)
    noise = 0.35 * rng.standard_normal((TRAINING_IMAGES, *IMAGE_SHAPE))
    images = np.clip(colours[labels][:, None, None, :] + noise, 0.0, 1.0).astype(np.float32)
    return images, labels


def write_image_classifier(version_dir: str, *, seed: int = 0, epochs: int = 8) -> str:
    """The demo CNN trained from ``seed`` for ``epochs``, at ``version_dir``."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    images, labels = training_data(seed)
    inputs = tf.keras.Input(IMAGE_SHAPE, name="image")
    hidden = tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    hidden = tf.keras.layers.Conv2D(16, 3, strides=2, activation="relu")(hidden)
    hidden = tf.keras.layers.GlobalAveragePooling2D()(hidden)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(NUM_CLASSES)(hidden))
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images, labels, batch_size=64, epochs=epochs, verbose=0)
    return save_image_classifier(model, version_dir)


def save_image_classifier(model, version_dir: str) -> str:
    """A trained Keras classifier as a SavedModel with the demo's signature (also how the
    same weights are saved again as a new version)."""
    import keras
    import tensorflow as tf

    def serve(image):
        probabilities = tf.nn.softmax(model(image, training=False))
        return {"probabilities": probabilities, "classes": tf.argmax(probabilities, axis=1)}

    def save(path: str) -> None:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", serve, input_signature=[
            tf.TensorSpec([None, *IMAGE_SHAPE], tf.float32, name="image")])
        archive.write_out(path, verbose=False)

    return write_version_dir(version_dir, save)


def save_again(source_dir: str, version_dir: str) -> str:
    """The SavedModel at ``source_dir`` loaded and saved anew at ``version_dir``: the same
    weights in a fresh serialization, as a re-export of an unchanged model gives."""
    import tensorflow as tf

    loaded = tf.saved_model.load(source_dir)
    signatures = dict(loaded.signatures)
    return write_version_dir(version_dir, lambda path: tf.saved_model.save(
        loaded, path, signatures=signatures))
