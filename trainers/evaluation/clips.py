"""The one way an evaluation reads a clip from a video: ``frames_per_clip`` frames ``stride`` apart, scaled.

DoRA's tracks and VideoMAE's reconstructions both show one clip as the run trained on clips (T frames at a
stride); reading it through `wtours.frames.iter_frames`, the toolkit's one decoder, places frames by their
timestamps like every other stage.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wtours.errors import WtoursError


def read_clip(
    video: Path,
    *,
    start_frame: int,
    frames_per_clip: int,
    stride: int,
    height: int | None = None,
    short_side: int | None = None,
    min_width: int = 2,
) -> torch.Tensor:
    """uint8 [T, 3, H, W]: frames ``start_frame``, ``start_frame + stride``, ... of ``video``, scaled so that
    the frame is ``height`` high, or its short side ``short_side`` long (one of the two); the other side keeps
    the aspect ratio, at least ``min_width`` pixels wide."""
    from wtours.frames import iter_frames, stream_info

    if (height is None) == (short_side is None):
        raise ValueError("give the clip's height or its short side, not both")
    info = stream_info(video)
    scale = (height / info.height) if height is not None else short_side / min(info.width, info.height)
    size = (max(min_width, round(info.width * scale)), height or max(2, round(info.height * scale)))
    end_frame = start_frame + stride * (frames_per_clip - 1) + 1
    frames = [
        torch.from_numpy(frame.images["clip"]).permute(2, 0, 1)
        for frame in iter_frames(video, {"clip": size}, start_frame=start_frame, end_frame=end_frame)
        if (frame.index - start_frame) % stride == 0
    ]
    if len(frames) < frames_per_clip:
        raise WtoursError(
            f"{video}: a clip of {frames_per_clip} frames at stride {stride} from frame {start_frame} runs past the "
            f"end (got {len(frames)} frames; the video has about {info.estimated_frames}); pick an earlier start "
            "or a shorter stride"
        )
    return torch.stack(frames)
