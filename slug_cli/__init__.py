"""The ``slug`` command line and developer tools; the library is ``pipeline``."""
