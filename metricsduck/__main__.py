"""`python -m metricsduck`: the `metricsduck` command, where its script is not on PATH."""

from .cli import run

if __name__ == "__main__":
    run()
