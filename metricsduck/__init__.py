"""metricsduck: DuckDB views over sidecar Parquet files for ML pipeline metrics and drift."""

# The one version source: pyproject.toml reads it (statically, without importing the
# package) and `metricsduck --version` prints it. First, so that it is set before any import.
__version__ = "0.2.0.dev0"

from .check import Problem, check
from .config import Config, load_config
from .errors import ConfigError, InputError, MetricsDuckError, SidecarError, SqlFileError, StorageError
from .store import Store, connect, init
from .tracker import ReproducibilityTracker
from .writer import write_cohort_metrics

__all__ = [
    "Config", "ConfigError", "InputError", "MetricsDuckError", "Problem",
    "ReproducibilityTracker", "SidecarError", "SqlFileError", "StorageError", "Store",
    "__version__", "check", "connect", "init", "load_config", "write_cohort_metrics",
]
