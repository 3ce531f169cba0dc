"""The four services' mains: ``emolens ingest|detect|aggregate|gateway`` run them.

Each is a thin process around a stage (:mod:`emolens.stages`) or the gateway's servicer: it
builds the adapters from the settings, serves health, and runs until SIGTERM. What is per
deployment and not code (container entry, default configuration, ports) lives in the
repository's top-level ``services/<name>/`` folders.
"""
