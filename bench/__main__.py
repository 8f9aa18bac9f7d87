"""``python -m bench``: run every benchmark and print one table (see bench/run.py)."""

from .run import main

main()
