"""Kept for old habits: the same as ``emolens dev install|up|down`` (:mod:`emolens.dev`)."""

from emolens.dev import main

raise SystemExit(main())
