"""Train one model: ``python scripts/train.py --task smile`` (see emolens/training/run.py for
every flag, or ``--help``). The code lives in :mod:`emolens.training.run`; it needs the ``train``
extra (PyTorch)."""

import sys

try:
    from emolens.training.run import main
except ModuleNotFoundError as exc:
    print(
        f"error: training needs the train extra ({exc.name} is missing): pip install -e '.[train]' or make install-dev",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

raise SystemExit(main())
