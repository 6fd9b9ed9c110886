"""The ``reasonlens`` command. Each module holds one command group and only parses arguments, builds a
config and calls the library."""
