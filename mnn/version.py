"""The version of mnn, in one place: ``mnn.__version__`` and every checkpoint's metadata."""

__version__ = "0.1.0"
