"""Stand-in for the torchvision pieces visual_bge imports (see ../README.md)."""
