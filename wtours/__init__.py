"""wtours: curate and study long egocentric walking-tour videos.

The package is light to import on purpose: heavy libraries (torch, ultralytics, scenedetect, ray) are imported
only inside the commands that need them. Every command is a function here too, with its request model
(``from wtours import fetch, FetchRequest``; see ``wtours.workflows``), imported when first used.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    import importlib

    from wtours.workflows import EXPORTS

    if name not in EXPORTS:
        raise AttributeError(f"module 'wtours' has no attribute {name!r}")
    module, attribute = EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    from wtours.workflows import EXPORTS

    return sorted([*globals(), *EXPORTS])
