"""Evaluation and reporting of pretrained encoders; reads what ``wtours.trainers.training`` exported.

- ``features.py``: load an exported encoder (timm, offline), [CLS] and patch features, the feature cache;
- ``knn.py``, ``linear.py``: DINO's k-NN and linear-probe protocols; ``attention_maps.py``: per-head maps;
- ``davis.py``: DAVIS-2017 label propagation and its J&F; ``tracks.py``: DoRA's discovered objects on a clip;
  ``reconstruct.py``: VideoMAE's reconstructions; ``clips.py``: the clip these two read from a video;
- ``compare.py``: several runs side by side (figures and tables).
"""
