"""``python -m mmrag.server``: the same as ``mmrag serve``."""

from __future__ import annotations

import sys

from mmrag.server.main import main

if __name__ == "__main__":
    sys.exit(main())
