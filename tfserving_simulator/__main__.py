"""``python -m tfserving_simulator``: the simulator with tensorflow_model_server's flags."""

import sys

from tfserving_simulator.app import main

if __name__ == "__main__":
    sys.exit(main())
