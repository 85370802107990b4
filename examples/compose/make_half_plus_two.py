"""Write the half_plus_two SavedModel that the compose example's TF Serving serves.

    python make_half_plus_two.py /models/half_plus_two [--version 1] [--force]

y = 0.5 * x + 2, signature ``serving_default`` with input ``x`` (float32, shape [-1, 1]) and
output ``y`` (same shape): the model of the exporter's demo golden set
(tfserving_simulator/demo_data/golden/half_plus_two.json). Run by the compose file's one-shot
``make-model`` service in the tensorflow/tensorflow image; it leaves an existing version alone
unless --force is given, so `docker compose up` can run it every time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile


def build_module():
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="half_plus_two")
            self.a = tf.Variable(0.5, dtype=tf.float32, name="a")
            self.b = tf.Variable(2.0, dtype=tf.float32, name="b")

        @tf.function(input_signature=[tf.TensorSpec(shape=[None, 1], dtype=tf.float32,
                                                    name="x")])
        def serve(self, x):
            return {"y": self.a * x + self.b}

    return HalfPlusTwo()


def write(base_path: str, version: int, force: bool) -> str:
    import tensorflow as tf

    target = os.path.join(base_path, str(version))
    if os.path.exists(os.path.join(target, "saved_model.pb")) and not force:
        print(f"{target} already holds a SavedModel; leaving it (use --force to rewrite)")
        return target
    os.makedirs(base_path, exist_ok=True)
    module = build_module()
    # Written next to the target and renamed into place: TF Serving polls the base path and
    # must never see a half-written version directory.
    staging = tempfile.mkdtemp(prefix=f".{version}-", dir=base_path)
    try:
        tf.saved_model.save(module, staging, signatures={"serving_default": module.serve})
        os.chmod(staging, 0o755)  # mkdtemp makes it private; TF Serving may run as another user
        if os.path.exists(target):
            shutil.rmtree(target)
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {target}: y = 0.5 * x + 2, signature serving_default (x -> y)")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base_path", help="the model's base path, e.g. /models/half_plus_two")
    parser.add_argument("--version", type=int, default=1, help="version directory (default 1)")
    parser.add_argument("--force", action="store_true", help="rewrite an existing version")
    args = parser.parse_args(argv)
    if args.version < 1:
        parser.error("--version must be a positive integer")
    write(args.base_path, args.version, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
