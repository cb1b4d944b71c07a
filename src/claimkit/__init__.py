"""claimkit: an ML paper's empirical claims as executable, statistically bounded tests."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("claimkit")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
