"""wtours: curate and study long egocentric walking-tour videos.

The package is light to import on purpose: heavy libraries (torch, ultralytics,
scenedetect, ray) are imported only inside the commands that need them.
"""

__version__ = "0.1.0"
