"""SLUG (Single Layer Unlearning Gradient) as a reproducible pipeline.

The package is a library: pure functions and small classes that know nothing about DVC or the
repository's file layout. The thin entry points in ``stages/`` read ``params.yaml``, call into
this package and write the declared outputs.
"""

__version__ = "0.1.0"
