"""Deployment: self-contained bundles for a device (``bundle``), and running them on a device over SSH (``remote``).

Sits above ``benchmarks`` (a remote benchmark is the local one, run from a bundle on the device) and
below the CLI. What runs on the device is the bundle's own ``run.py`` plus the runtime: no TensorFlow.
"""
