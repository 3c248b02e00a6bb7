"""impctl: the impOS network-connection model for Linux gateways."""

__version__ = "0.1.0"
