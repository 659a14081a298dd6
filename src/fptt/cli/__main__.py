"""``python -m fptt.cli``: the ``fptt`` command."""
import sys

from . import main

sys.exit(main())
