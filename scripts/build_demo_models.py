#!/usr/bin/env python3
"""Build the demo's real SavedModels, or a variant of one, with TensorFlow.

    python scripts/build_demo_models.py                  # the shipped demo models
    python scripts/build_demo_models.py half_plus_two --b 2.01 DIR/124
    python scripts/build_demo_models.py image_classifier --seed 1 DIR/2

Without arguments it rewrites ``tfserving_simulator/demo_data/models/``: half_plus_two version
00000123 (TF Serving's test model, y = 0.5·x + 2) and image_classifier version 1 (a small CNN
trained from seed 0), about 160 KB that ship with the simulator so the demo starts without
building anything. With a model name it writes one version directory (renamed into place
whole, so a running simulator loads it at once): a "bad" half_plus_two with another ``b``, or a
"retrained" classifier from another seed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tfserving_simulator import savedmodel_builders as builders  # noqa: E402
from tfserving_simulator.demo_files import DEMO_MODELS_DIR  # noqa: E402

DEMO_VERSIONS = {"half_plus_two": "00000123", "image_classifier": "1"}


def build_shipped() -> None:
    if os.path.isdir(DEMO_MODELS_DIR):
        shutil.rmtree(DEMO_MODELS_DIR)
    builders.write_half_plus_two(os.path.join(DEMO_MODELS_DIR, "half_plus_two",
                                              DEMO_VERSIONS["half_plus_two"]))
    builders.write_image_classifier(os.path.join(DEMO_MODELS_DIR, "image_classifier",
                                                 DEMO_VERSIONS["image_classifier"]))
    # Not part of a SavedModel's meaning, and different on every build.
    for root, _, files in os.walk(DEMO_MODELS_DIR):
        if "fingerprint.pb" in files:
            os.remove(os.path.join(root, "fingerprint.pb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="model")
    half = sub.add_parser("half_plus_two", help="y = a·x + b (and y2 = a·x + c)")
    half.add_argument("version_dir")
    half.add_argument("--a", type=float, default=0.5)
    half.add_argument("--b", type=float, default=2.0)
    half.add_argument("--c", type=float, default=3.0)
    cnn = sub.add_parser("image_classifier", help="the demo CNN trained from --seed")
    cnn.add_argument("version_dir")
    cnn.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.model is None:
        build_shipped()
        print(f"wrote {DEMO_MODELS_DIR}")
    elif os.path.exists(args.version_dir):
        print(f"build_demo_models.py: {args.version_dir} already exists", file=sys.stderr)
        return 1
    elif args.model == "half_plus_two":
        print(builders.write_half_plus_two(args.version_dir, a=args.a, b=args.b, c=args.c))
    else:
        print(builders.write_image_classifier(args.version_dir, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
