"""One rule for which videos a command works on: --only ids, --group, and the fetched-only rule."""

from __future__ import annotations

import textwrap

import pytest

from wtours.errors import WtoursError
from wtours.manifest import parse_manifest
from wtours.selection import select_videos
from wtours.store import Store, atomic_write_json

MANIFEST = parse_manifest(
    textwrap.dedent(
        """
        videos:
          - {id: a, group: wt, sources: [a.mp4]}
          - {id: b, group: movies, sources: [b.mp4]}
          - {id: c, group: wt, sources: [c.mp4]}
        """
    ),
    name="m.yaml",
)


def ids(entries) -> list[str]:
    return [entry.id for entry in entries]


@pytest.fixture
def store(tmp_path) -> Store:
    """'a' fetched, and an anonymized copy 'a-anon' that only the store knows."""
    store = Store.at(tmp_path)
    store.videos_dir.mkdir()
    for video_id in ("a", "a-anon"):
        store.video_path(video_id).write_bytes(b"video")
    atomic_write_json(store.sidecar_path("a-anon"), {"group": "wt", "derived_from": "a"})
    return store


def test_ids_in_the_order_given_and_groups():
    assert ids(select_videos(MANIFEST)) == ["a", "b", "c"]
    assert ids(select_videos(MANIFEST, ["c", "a", "c"])) == ["c", "a"]
    assert ids(select_videos(MANIFEST, None, "wt")) == ["a", "c"]
    assert ids(select_videos(MANIFEST, ["b", "c"], "wt")) == ["c"]


def test_an_unknown_id_or_group_is_one_error_naming_what_is_known(store):
    with pytest.raises(WtoursError, match=r"^not in the manifest: zz, yy \(known: a, b, c\)$"):
        select_videos(MANIFEST, ["a", "zz", "yy"])
    with pytest.raises(WtoursError, match=r"^no group 'ava' in the manifest \(groups: movies, wt\)$"):
        select_videos(MANIFEST, None, "ava")
    with pytest.raises(WtoursError, match=f"^not in the manifest nor in {store.videos_dir}: zz "):
        select_videos(MANIFEST, ["zz"], store=store)
    with pytest.raises(WtoursError, match="not in the manifest nor in"):
        select_videos(MANIFEST, ["../a"], store=store)  # never looked up outside the store


def test_a_video_only_the_store_knows_is_selected_by_id_with_its_group(store):
    with pytest.raises(WtoursError, match="not in the manifest: a-anon"):
        select_videos(MANIFEST, ["a-anon"])  # fetch: nothing to fetch it from
    [copy] = select_videos(MANIFEST, ["a-anon"], store=store)
    assert (copy.id, copy.group, copy.sources[0].location) == ("a-anon", "wt", str(store.video_path("a-anon")))
    assert ids(select_videos(MANIFEST, ["a-anon", "b"], "wt", store=store)) == ["a-anon"]


def test_fetched_only_keeps_the_fetched_videos_unless_ids_are_given(store):
    assert ids(select_videos(MANIFEST, store=store, fetched_only=True)) == ["a"]
    assert ids(select_videos(MANIFEST, None, "wt", store=store, fetched_only=True)) == ["a"]
    # Asked for by id, an unfetched video is kept: the command then says what it lacks.
    assert ids(select_videos(MANIFEST, ["b", "a"], store=store, fetched_only=True)) == ["b", "a"]
    with pytest.raises(WtoursError, match=r"none of the videos of group 'movies' is in .*run `wtours fetch` first"):
        select_videos(MANIFEST, None, "movies", store=store, fetched_only=True)
    # analyze takes the group's videos fetched or not, and fails the unfetched ones alone.
    assert ids(select_videos(MANIFEST, None, "movies", store=store)) == ["b"]
