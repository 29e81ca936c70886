"""Stand-in for the timm helpers visual_bge imports (see ../README.md)."""
