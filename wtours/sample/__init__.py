"""Embedded sample: synthetic walking-tour videos rendered from real photographs, with ground truth."""
