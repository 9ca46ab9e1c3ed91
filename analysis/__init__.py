"""Dataset statistics of the paper's Figure 2 / Table 1: one decode pass feeding small analyzers.

- ``base``: the analyzer shape (one ``process_frame`` method, PySceneDetect style);
- ``lightness``, ``shots``, ``objects`` (+ ``detectors``): the analyzers;
- ``window``: the work unit (a time window of one video) and its cache;
- ``executors``: local process pool or Ray;
- ``run``: ``analyze_videos`` — plan, execute, merge into ``analysis/<id>/``;
- ``figure``: Figure 2 (PNG + PDF) and Table 1 (CSV, Markdown, LaTeX).

Frames come from :func:`wtours.frames.iter_frames`, the project's one frame iterator.
"""
