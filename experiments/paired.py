"""Two runs of one design that differ in one execution setting (bfloat16 arithmetic by
default), compared statistic by statistic against the reference run's noise
(jaxlottery.paired_runs).

    python experiments/paired.py --preset=imprint --dataset=/usr/share/datasets/fashion-mnist \
        --spawn_epochs=0,1,3 --vary=compute_dtype=bfloat16 --out=DIR
"""

import sys

from jaxlottery.paired_runs import main

if __name__ == "__main__":
    sys.exit(main())
