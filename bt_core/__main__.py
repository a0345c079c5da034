"""Entry point for ``python -m bt_core``."""
import sys

from bt_core.cli import main

sys.exit(main())
