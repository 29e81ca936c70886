"""``python -m mmrag``: the same as the ``mmrag`` command."""

from __future__ import annotations

import sys

from mmrag.cli import main

sys.exit(main())
