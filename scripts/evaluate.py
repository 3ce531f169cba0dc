"""Kept for old habits: the same as ``emolens evaluate`` (:mod:`emolens.evaluation.run`)."""

from emolens.evaluation.run import main

raise SystemExit(main())
