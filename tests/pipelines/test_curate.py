"""Clip index and training proxy, on a frame-numbered video whose every frame shows its own index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from wtours.errors import WtoursError
from wtours.pipelines.clip_index import ClipSpec, build_clip_index, valid_starts
from wtours.pipelines.curate import CurateOptions, curate_video, curate_videos
from wtours.pipelines.proxy import ProxyReader, ProxySettings, check_proxy, ensure_proxy
from wtours.sample.numbered import read_frame_number, render_numbered
from wtours.store import Store

N_FRAMES = 300
CUTS = [137, 211]
BLANK = [50]
FROZEN = [260]
SPEC = ClipSpec(frames_per_clip=4, stride=10)
# Small shards so that a 300-frame video has several, each cut by its own seeking ffmpeg run.
PROXY = ProxySettings(short_side=96, jpeg_qscale=2, frames_per_shard=70)


def analysis_tables(n_frames: int, cuts: list[int], blank: list[int], frozen: list[int]) -> tuple[pd.DataFrame, ...]:
    frame = np.arange(n_frames)
    frames = pd.DataFrame(
        {
            "frame": frame,
            "time": frame / 30.0,
            "lightness": np.linspace(10.0, 90.0, n_frames),  # darkest at the start
            "luma": np.linspace(0.1, 0.9, n_frames),
            "blank": np.isin(frame, blank),
            "frozen": np.isin(frame, frozen),
        }
    )
    starts = [0, *cuts]
    ends = [*cuts, n_frames]
    shots = pd.DataFrame({"shot": range(len(starts)), "start_frame": starts, "end_frame": ends,
                          "start_time": np.asarray(starts) / 30.0, "end_time": np.asarray(ends) / 30.0})  # fmt: skip
    return frames, shots


def write_analysis(store: Store, video_id: str, frames: pd.DataFrame, shots: pd.DataFrame) -> None:
    folder = store.analysis_dir(video_id)
    folder.mkdir(parents=True, exist_ok=True)
    frames.to_parquet(folder / "frames.parquet")
    shots.to_parquet(folder / "shots.parquet")


@pytest.fixture
def numbered_store(tmp_path: Path) -> Store:
    store = Store.at(tmp_path / "data")
    store.videos_dir.mkdir(parents=True)
    render_numbered(store.video_path("num"), n_frames=N_FRAMES, width=160, height=96, fps=30, gop=45)
    write_analysis(store, "num", *analysis_tables(N_FRAMES, CUTS, BLANK, FROZEN))
    return store


def brute_force_valid(start: int, spec: ClipSpec, n_frames: int, cuts: list[int], bad: set[int]) -> bool:
    last = start + spec.span - 1
    if last >= n_frames:
        return False
    if any(start < cut <= last for cut in cuts):
        return False
    return not any(int(frame) in bad for frame in spec.frame_numbers(start))


@pytest.mark.parametrize("spec", [ClipSpec(4, 10), ClipSpec(8, 3, start_step=5), ClipSpec(2, 1, start_step=7)])
def test_index_rows_are_exactly_the_valid_starts(spec: ClipSpec) -> None:
    frames, shots = analysis_tables(N_FRAMES, CUTS, BLANK, FROZEN)
    bad = set(BLANK) | set(FROZEN)
    valid = [s for s in range(N_FRAMES) if brute_force_valid(s, spec, N_FRAMES, CUTS, bad)]
    bad_frames = np.isin(np.arange(N_FRAMES), list(bad))
    assert valid_starts(N_FRAMES, np.array([0, *CUTS]), bad_frames, spec).nonzero()[0].tolist() == valid

    index = build_clip_index("num", frames, shots, spec)
    covered = [s for row in index.itertuples() for s in range(row.start_frame, row.start_frame + row.max_shift + 1)]
    assert set(covered) <= set(valid)
    # Every window of start_step frames that holds a valid start gives one row, starting at its first one.
    for window in range(0, N_FRAMES, spec.step):
        in_window = [s for s in valid if window <= s < window + spec.step]
        rows = index[(index.start_frame >= window) & (index.start_frame < window + spec.step)]
        assert rows.start_frame.tolist() == in_window[:1]
    for row in index.itertuples():
        assert row.end_frame == row.start_frame + spec.span
        assert not any(row.start_frame < cut < row.end_frame for cut in CUTS)
    assert index["clip"].tolist() == list(range(len(index)))


def test_scores_are_kept_not_thresholded() -> None:
    frames, shots = analysis_tables(N_FRAMES, [], [], [])
    index = build_clip_index("num", frames, shots, SPEC)
    expected = 1 - frames.lightness.to_numpy()[SPEC.frame_numbers(0)].mean() / 100
    assert index.darkness.iloc[0] == pytest.approx(expected)
    assert index.darkness.is_monotonic_decreasing  # lightness rises over the video
    assert len(index) == len(range(0, N_FRAMES - SPEC.span + 1, SPEC.step))  # nothing dropped for scores


def test_curate_writes_proxy_and_index_with_exact_frames(numbered_store: Store) -> None:
    index = curate_video(numbered_store, "num", CurateOptions(SPEC, PROXY), show_progress=False)
    assert pd.read_parquet(numbered_store.clips_path("num")).equals(index)
    assert index.motion.notna().all() and (index.motion > 0).all()  # numbers change between frames
    reader = ProxyReader(numbered_store.proxy_dir("num", PROXY.short_side))
    assert (reader.frame_count, reader.width, reader.height) == (N_FRAMES, 160, 96)
    # Every proxy frame, across all five shards, is the original frame with the same number.
    assert [read_frame_number(image) for image in reader.read(np.arange(N_FRAMES))] == list(range(N_FRAMES))


def test_resuming_recuts_only_missing_shards(numbered_store: Store) -> None:
    directory = ensure_proxy(numbered_store, "num", PROXY, show_progress=False)
    kept = directory / "shard-00000.jpg.bin"
    before = kept.stat().st_mtime_ns
    # An interrupted build: shard 2 never finished, so neither did the sidecar.
    (directory / "proxy.json").unlink()
    (directory / "shard-00002.offsets.npy").unlink()
    assert check_proxy(directory) == "unfinished (no proxy.json)"
    ensure_proxy(numbered_store, "num", PROXY, show_progress=False)
    assert kept.stat().st_mtime_ns == before
    assert check_proxy(directory) is None
    frames = ProxyReader(directory).read(np.arange(140, 210))
    assert [read_frame_number(image) for image in frames] == list(range(140, 210))


def test_corrupt_proxy_is_detected_and_rebuilt(numbered_store: Store, capsys: pytest.CaptureFixture) -> None:
    directory = ensure_proxy(numbered_store, "num", PROXY, show_progress=False)
    shard = directory / "shard-00001.jpg.bin"
    shard.write_bytes(shard.read_bytes()[:-500])  # truncated, e.g. by a full disk
    with pytest.raises(WtoursError, match=r"frame 139 .*corrupt proxy.*wtours curate"):
        ProxyReader(directory, rebuild_hint="wtours curate").read([139])
    assert "shard 1 is" in check_proxy(directory)

    ensure_proxy(numbered_store, "num", PROXY, show_progress=False)
    assert "unusable (shard 1 is" in capsys.readouterr().err
    assert read_frame_number(ProxyReader(directory).read([139])[0]) == 139


def test_bit_flip_inside_a_shard_fails_with_a_clear_message(numbered_store: Store) -> None:
    directory = ensure_proxy(numbered_store, "num", PROXY, show_progress=False)
    offsets = np.load(directory / "shard-00000.offsets.npy")
    data = bytearray((directory / "shard-00000.jpg.bin").read_bytes())
    data[offsets[10] : offsets[10] + 40] = b"\x00" * 40  # wipe frame 10's header
    (directory / "shard-00000.jpg.bin").write_bytes(bytes(data))
    with pytest.raises(WtoursError, match="frame 10 does not decode"):
        ProxyReader(directory).read([10])


def test_a_changed_source_or_setting_makes_the_proxy_stale(numbered_store: Store) -> None:
    directory = ensure_proxy(numbered_store, "num", PROXY, show_progress=False)
    render_numbered(numbered_store.video_path("num"), n_frames=150, width=160, height=96, fps=30)
    assert check_proxy(directory, expected_source=_source(numbered_store)) == (
        "the source video changed since the proxy was made"
    )
    ensure_proxy(numbered_store, "num", PROXY, show_progress=False)
    assert ProxyReader(directory).frame_count == 150
    assert not (directory / "shard-00004.jpg.bin").exists()  # old shards went with the old source


def test_a_partial_analysis_curates_the_measured_frames_only(numbered_store: Store) -> None:
    frames, shots = analysis_tables(200, [137], BLANK, FROZEN)  # as `wtours analyze --duration` leaves it
    write_analysis(numbered_store, "num", frames, shots)
    index = curate_video(numbered_store, "num", CurateOptions(SPEC, PROXY), show_progress=False)
    assert len(index) > 0 and index.end_frame.max() <= 200


def test_missing_analysis_is_one_clear_error(numbered_store: Store) -> None:
    (numbered_store.analysis_dir("num") / "shots.parquet").unlink()
    results = curate_videos(numbered_store, ["num", "absent"], CurateOptions(SPEC, PROXY), show_progress=False)
    assert [result.ok for result in results] == [False, False]
    assert "run `wtours analyze --only num`" in results[0].error
    assert not numbered_store.clips_path("num").exists()


def _source(store: Store) -> dict:
    from wtours.pipelines.proxy import source_identity

    return source_identity(store, "num")


def test_cli_curates_by_id_and_fails_per_video(numbered_store: Store) -> None:
    from typer.testing import CliRunner

    from wtours.cli import app

    arguments = ["curate", "-d", str(numbered_store.root), "-T", "4", "-s", "10", "--proxy-short-side", "96",
                 "--shard-frames", "70"]  # fmt: skip
    done = CliRunner().invoke(app, [*arguments, "--only", "num"])
    assert done.exit_code == 0, done.output
    assert len(pd.read_parquet(numbered_store.clips_path("num"))) > 0
    # A video of the store that was never analysed fails alone, with the fix.
    numbered_store.video_path("ghost").write_bytes(numbered_store.video_path("num").read_bytes())
    failed = CliRunner().invoke(app, [*arguments, "--only", "num,ghost"])
    assert failed.exit_code == 1
    [error] = [line for line in failed.output.splitlines() if "ghost" in line]  # one unwrapped line
    assert error.startswith("error: ghost: no frames.parquet or shots.parquet in "), error  # not "ghost: ghost:"
    # An id that is neither in the manifest nor in the store is one error before any work (wtours.selection).
    unknown = CliRunner().invoke(app, [*arguments, "--only", "num,nowhere"])
    assert isinstance(unknown.exception, WtoursError) and unknown.exception.exit_code == 2  # wtours.cli.main: exit 2
    assert str(unknown.exception).startswith(f"not in the manifest nor in {numbered_store.videos_dir}: nowhere (")
    assert not numbered_store.proxies_dir("nowhere").exists()


def test_webdataset_export_holds_the_clips_frames(numbered_store: Store, tmp_path: Path) -> None:
    import io
    import tarfile

    from PIL import Image

    from wtours.pipelines.webdataset_export import export_webdataset

    index = curate_video(numbered_store, "num", CurateOptions(SPEC, PROXY), show_progress=False)
    shards = export_webdataset(numbered_store, "num", tmp_path / "wds", clips_per_shard=10)
    assert len(shards) == -(-len(index) // 10)
    with tarfile.open(shards[1]) as tar:
        members = {member.name: tar.extractfile(member).read() for member in tar.getmembers()}
    clip = index.iloc[10]
    key = f"num-c{clip['clip']:08d}"
    assert {f"{key}.f{t:02d}.jpg" for t in range(SPEC.frames_per_clip)} | {f"{key}.json"} <= set(members)
    numbers = [read_frame_number(np.asarray(Image.open(io.BytesIO(members[f"{key}.f{t:02d}.jpg"]))))
               for t in range(SPEC.frames_per_clip)]  # fmt: skip
    assert numbers == SPEC.frame_numbers(int(clip["start_frame"])).tolist()


def test_a_resampled_proxy_frame_shows_the_source_frame_on_screen_at_its_time(tmp_path: Path) -> None:
    """Proxy frame i of a 10 fps resampled proxy shows the last source frame shown at or before i / 10 s."""
    from wtours.pipelines.proxy import PROXY_FORMAT, SIDECAR_NAME
    from wtours.store import atomic_write_json

    sidecar = {"format": PROXY_FORMAT, "width": 16, "height": 16, "frame_count": 11,
               "settings": {"frames_per_shard": 100}, "frame_mapping": "resampled",
               "resampled_fps": "10/1"}  # fmt: skip
    atomic_write_json(tmp_path / SIDECAR_NAME, sidecar)
    times = np.array([0.0, 0.1, 0.5, 0.55, 1.0])  # source frames; 0.1 s lies exactly on proxy frame 1
    shown, at = ProxyReader(tmp_path).frames_shown(times)  # until: one proxy frame after the last source frame
    assert shown.tolist() == [0, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4] and at[5] == 0.5
    shown, _ = ProxyReader(tmp_path).frames_shown(times, until=0.75)  # an analysis of the first 0.75 s
    assert shown.tolist() == [0, 1, 1, 1, 1, 2, 3, 3]
    atomic_write_json(tmp_path / SIDECAR_NAME, {**sidecar, "frame_mapping": "identity"})
    assert ProxyReader(tmp_path).frames_shown(times)[0].tolist() == [0, 1, 2, 3, 4]
