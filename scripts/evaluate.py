"""Kept for old habits: the same as ``emolens evaluate`` (:mod:`emolens_tools.evaluation.run`)."""

from emolens_tools.evaluation.run import main

raise SystemExit(main())
