"""The foundation every layer uses: errors, atomic writes, hashing, versions, the TensorFlow switch, the
run-folder layout, settings, and the checks for data from elsewhere. It imports no layer above it."""

__version__ = "0.1.0"
