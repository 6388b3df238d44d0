"""gapbench: measure AI pipelines end to end and see where each request's time goes."""

__version__ = "0.1.0"
