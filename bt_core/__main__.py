"""Entry point for ``python -m bt_core``."""
import sys

from .cli import main

sys.exit(main())
