"""Embedded sample: synthetic walking-tour videos rendered from real photographs, with ground truth.

It runs offline (the photos come with installed packages) and knows what it contains, so tests use it
as a fixture factory and ``wtours demo`` as the data it fetches::

    truth = render_walking_tour(tmp_path / "walk.mp4", seconds=2)   # one take, dusk, moving people
    truth.cut_frames, truth.lightness[0], truth.boxes[0]

The study set (``wtours.sample.study``) is a slow walk over 20 real photos plus labelled crops of them, for
CPU studies of whether a pretraining method learns.
"""

from wtours.sample.numbered import read_frame_number, render_numbered
from wtours.sample.photos import photo_paths
from wtours.sample.render import render_movie_like, render_walking_tour
from wtours.sample.sample_set import write_sample_set
from wtours.sample.study import StudyTruth, make_study_labelled_set, render_study_walk
from wtours.sample.truth import ObjectBox, SampleTruth

__all__ = [
    "ObjectBox",
    "SampleTruth",
    "StudyTruth",
    "make_study_labelled_set",
    "photo_paths",
    "read_frame_number",
    "render_movie_like",
    "render_numbered",
    "render_study_walk",
    "render_walking_tour",
    "write_sample_set",
]
