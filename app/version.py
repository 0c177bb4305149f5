"""The installed version, read once."""

from importlib.metadata import PackageNotFoundError, version

try:
    VERSION = version("ctxcloud")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0+unknown"
