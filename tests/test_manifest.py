"""The manifest model: the shipped manifest is valid, and each kind of bad input is named with its line."""

from __future__ import annotations

import textwrap

import pytest

from wtours.errors import WtoursError
from wtours.manifest import (
    FigshareSource,
    FileSource,
    UrlSource,
    YouTubeSource,
    load_manifest,
    parse_duration,
    parse_manifest,
)

WALKING_TOURS_IDS = {
    "amsterdam": "E07rTPgIvn0",
    "bangkok": "hUGcHvN4mME",
    "chiang_mai": "jyxIRzlkO_g",
    "istanbul": "mA9lYWyXMYU",
    "kuala_lumpur": "yLTycPjm0nk",
    "singapore": "aUJl46bEWYo",
    "stockholm": "Jr9x-RB4E1U",
    "venice": "fGX0Te6pFvk",
    "wildlife": "Q0ML5oAjX_w",
    "zurich": "_NmYvuEILw4",
}


def parse(text: str):
    return parse_manifest(textwrap.dedent(text), name="m.yaml")


def error_of(text: str) -> str:
    with pytest.raises(WtoursError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message, "errors must be one line"
    return message


def test_shipped_manifest_lists_the_ten_walking_tours_with_mirror():
    manifest = load_manifest()
    assert {video.id: video.sources[0].youtube for video in manifest.videos} == WALKING_TOURS_IDS
    for video in manifest.videos:
        assert video.group == "walking_tours"
        assert video.license == "CC-BY-4.0"
        assert any(isinstance(s, FigshareSource) and s.figshare == 25189275 for s in video.sources)
    durations = {video.id: video.duration for video in manifest.videos}
    assert durations["bangkok"] == 2 * 3600 + 55 * 60
    assert durations["venice"] == 3600 + 50 * 60
    assert durations["wildlife"] == 59 * 60


def test_source_forms_and_string_shorthand(tmp_path):
    manifest = parse_manifest(
        textwrap.dedent(
            """
            videos:
              - id: a
                group: movies
                duration: 90
                sources:
                  - https://www.youtube.com/watch?v=E07rTPgIvn0
                  - https://youtu.be/hUGcHvN4mME
                  - http://127.0.0.1:8000/a.mp4
                  - clips/a.mkv
                  - {figshare: 1, file: a.mp4}
                  - {path: /abs/a.mp4}
            """
        ),
        base_dir=tmp_path,
    )
    sources = manifest.videos[0].sources
    assert [type(s) for s in sources] == [
        YouTubeSource, YouTubeSource, UrlSource, FileSource, FigshareSource, FileSource,
    ]
    assert sources[0].youtube == "E07rTPgIvn0" and sources[1].youtube == "hUGcHvN4mME"
    assert manifest.resolve_path(sources[3]) == tmp_path / "clips/a.mkv"
    assert str(manifest.resolve_path(sources[5])) == "/abs/a.mp4"
    assert manifest.videos[0].duration == 90.0


def test_defaults_apply_but_entries_win():
    manifest = parse(
        """
        defaults: {group: wt, license: CC-BY-4.0}
        videos:
          - {id: a, sources: [x.mp4]}
          - {id: b, group: ava, sources: [y.mp4]}
        """
    )
    assert [(v.group, v.license) for v in manifest.videos] == [("wt", "CC-BY-4.0"), ("ava", "CC-BY-4.0")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("videos: [\n  {id: a, sources: [x.mp4]\n", "malformed YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        (
            "videos:\n  - {id: a, sources: [x.mp4]}\n  - {id: a, sources: [y.mp4]}\n",
            "line 3, videos[1] (id 'a').id: duplicate id 'a' (first at line 2)",
        ),
        ("videos:\n  - {id: A, sources: [x.mp4]}\n  - {id: a, sources: [y.mp4]}\n", "duplicate id 'a'"),
        ("videos:\n  - {id: ../x, sources: [x.mp4]}\n", "line 2, videos[0] (id '../x').id: unsafe id"),
        ("videos:\n  - {id: a/b, sources: [x.mp4]}\n", "unsafe id 'a/b'"),
        ("videos:\n  - {id: .hidden, sources: [x.mp4]}\n", "unsafe id"),
        ("videos:\n  - {id: a, sources: []}\n", "at least 1 item"),
        ("videos:\n  - {id: a}\n", "missing required key 'sources'"),
        ("videos:\n  - {id: a, sources: ['ftp://host/a.mp4']}\n", "unknown source kind 'ftp'"),
        ("videos:\n  - {id: a, sources: [{torrent: abc}]}\n", "exactly one of the keys"),
        ("videos:\n  - {id: a, sources: [{youtube: short}]}\n", "not a YouTube video id"),
        ("videos:\n  - {id: a, sources: [{url: 'x.mp4'}]}\n", "not an http(s) URL"),
        ("videos:\n  - {id: a, colour: red, sources: [x.mp4]}\n", "unknown key 'colour'"),
        ("videos:\n  - {id: a, duration: soon, sources: [x.mp4]}\n", "not a duration"),
        ("version: 2\nvideos:\n  - {id: a, sources: [x.mp4]}\n", "version"),
        ("videos:\n  - id: a\n    id: b\n    sources: [x.mp4]\n", "line 3, videos[0] (id 'b').id: key given twice"),
    ],
)
def test_bad_manifests_give_one_clear_line(text, expected):
    assert expected in error_of(text)


def test_every_problem_is_reported_with_its_line():
    message = error_of(
        """
        videos:
          - id: good
            sources: [a.mp4]
          - id: ../bad
            sources: [b.mp4]
          - id: other
            sauces: [c.mp4]
        """
    )
    assert message.startswith("m.yaml: invalid manifest (3 problems):")
    assert "line 5, videos[1] (id '../bad').id: unsafe id" in message
    assert "line 8, videos[2] (id 'other').sauces: unknown key 'sauces'" in message
    assert "line 7, videos[2] (id 'other'): missing required key 'sources'" in message


def test_missing_and_unreadable_manifest_files(tmp_path):
    with pytest.raises(WtoursError, match="manifest not found"):
        load_manifest(tmp_path / "nope.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(WtoursError, match="cannot read manifest"):
        load_manifest(binary)


@pytest.mark.parametrize(("text", "seconds"), [("1:50:00", 6600.0), ("59:00", 3540.0), ("12.5", 12.5), (90, 90.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bad_url_names_its_key_once():
    message = error_of("videos:\n  - {id: a, sources: [{url: 'ftp://x/a.mp4'}]}\n")
    assert "line 2, videos[0] (id 'a').sources[0].url: not an http(s) URL" in message
    assert ".url.url" not in message


# 267 bytes: nine lists of nine, seven levels deep, is 9**7 (4.8 million) strings once the aliases are followed.
ALIAS_BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9 if previous else ['x'] * 9)}]\n"
    for previous, name in zip(["", "a", "b", "c", "d", "e", "f"], "abcdefg", strict=True)
) + "videos: [*g]\n"


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    started = time.perf_counter()
    with pytest.raises(WtoursError) as raised:
        load_manifest(path)
    assert time.perf_counter() - started < 1.0
    assert str(raised.value) == (
        f"{path}: line 1: YAML anchors and aliases (&name, *name) are not allowed in a manifest; write each value out"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("defaults: &d {group: wt}\nvideos:\n  - {id: a, sources: [x.mp4]}\n", "line 1: YAML anchors and aliases"),
        ("videos:\n  - {id: a, sources: [x.mp4]}\n  - {id: b, sources: [*x]}\n", "line 3: YAML anchors and aliases"),
        ("videos: " + "[" * 2000 + "]" * 2000 + "\n", "line 1: nested more than 32 levels deep"),
    ],
    ids=["anchor", "undefined-alias", "deep-nesting"],
)
def test_yaml_a_manifest_never_needs_is_refused_with_its_line(text, expected):
    assert expected in error_of(text)


def test_an_oversized_manifest_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 300_000)  # 3 MB of comments
    with pytest.raises(WtoursError, match=r"huge.yaml: larger than a manifest may be \(2 MiB\)"):
        load_manifest(path)


def test_a_path_source_is_copied_unless_it_asks_for_a_link():
    manifest = parse("videos:\n  - {id: a, sources: [a.mp4, {path: b.mp4, link: true}]}\n")
    assert [source.link for source in manifest.videos[0].sources] == [False, True]
