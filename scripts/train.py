"""Train one model: ``python scripts/train.py --task smile`` (see tools/emolens_tools/training/options.py for
every flag, or ``--help``). The code lives in :mod:`emolens_tools.training.run`; it needs the ``train``
extra (PyTorch), ``--help`` does not."""

import sys

try:
    from emolens_tools.training.run import main
except ModuleNotFoundError as exc:
    hint = f"training needs the train extra ({exc.name} is missing): pip install -e 'tools[train]' or make install-dev"
    if {"-h", "--help"} & set(sys.argv[1:]):
        from emolens_tools.training.options import build_parser

        build_parser().print_help()
        print(f"\nnote: {hint}")
        raise SystemExit(0) from None
    print(f"error: {hint}", file=sys.stderr)
    raise SystemExit(2) from None

raise SystemExit(main())
