"""sfrs: visual geo-localization with self-supervised fine-grained region similarities."""

__version__ = "0.1.0"
