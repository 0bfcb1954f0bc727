"""The imprint experiment: t = 0 siblings with weight decay swept, so that the initialization's
imprint on the final weights spans 0.98 to about 0.05 (jaxlottery.imprint_sweep).

    python experiments/imprint.py --dataset=/usr/share/datasets/fashion-mnist --out=DIR
    python experiments/imprint.py --preset=smoke --spawn_epochs=0 --weight_decays=1e-4,1e-2
"""

import sys

from jaxlottery.imprint_sweep import main

if __name__ == "__main__":
    sys.exit(main())
