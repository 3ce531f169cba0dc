"""emolens' developer tools, apart from the runtime (``emolens``): the tools import the runtime,
never the reverse (``[tool.importlinter]`` in the checkout's pyproject.toml).

- :mod:`emolens_tools.bench`: ``emolens bench``, the benchmarks behind docs/benchmarks.md;
- :mod:`emolens_tools.evaluation`: ``emolens evaluate``, the model card;
- :mod:`emolens_tools.training`: training and export of the smile and emotion CNNs
  (``python scripts/train.py``);
- :mod:`emolens_tools.dev`: ``emolens dev install|up|down|status|peers``, the real servers on
  loopback under :mod:`emolens_tools.supervise`, with :mod:`emolens_tools.broker_recycle`
  bounding the memory-only dev broker; :mod:`emolens_tools.peers`: other packages' pipelines
  for the bench;
- :mod:`emolens_tools.soak`: the soak run (``python -m emolens_tools.soak``);
- :mod:`emolens_tools.synthetic`: synthetic statistics (``scripts/generate_stats.py``);
- :mod:`emolens_tools.testframes`: frames with known content for measuring the detector.
"""
