"""The study end to end: `python experiments/run.py --k=10` (paper protocol on CIFAR-10).

    python experiments/run.py --preset=smoke          # every stage on synthetic data, in minutes
    python experiments/run.py --preset=quick --dataset=fashion_mnist.npz
    python experiments/run.py --help                  # every flag with its default

A thin wrapper over jaxlottery.cli / jaxlottery.experiment.run, which notebooks call directly.
Run the same command again to resume an interrupted run.
"""

import sys

from jaxlottery.cli import main

if __name__ == "__main__":
    sys.exit(main())
