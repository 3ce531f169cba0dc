"""Train one model: ``python scripts/train.py --task smile`` (see emolens/training/run.py for
every flag, or ``--help``). The code lives in :mod:`emolens.training.run`."""

from emolens.training.run import main

raise SystemExit(main())
