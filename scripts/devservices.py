"""Kept for old habits: the same as ``emolens dev install|up|down`` (:mod:`emolens_tools.dev`)."""

from emolens_tools.dev import main

raise SystemExit(main())
