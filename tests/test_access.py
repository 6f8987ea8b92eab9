"""What a browser may name when the app serves a room (convlens.access), and the CLI may not lose."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from convlens import data
from convlens.ablation import labelled_dataset
from convlens.access import (
    FULL_ACCESS,
    NOT_PUBLISHED,
    Access,
    browser_access,
    data_roots_from,
    is_plain_name,
    max_trainers,
)
from convlens.activations import open_source
from convlens.data import ImageSourceError, load_image, parse_dataset
from convlens.ui.launch import AppOptionError, serving_environment


@pytest.fixture
def published(tmp_path: Path) -> Path:
    """A data root with one photo and an ImageFolder of two classes."""
    root = tmp_path / "published"
    (root / "pets" / "cat").mkdir(parents=True)
    (root / "pets" / "dog").mkdir(parents=True)
    Image.new("RGB", (8, 6), "red").save(root / "photo.png")
    Image.new("RGB", (4, 4), "white").save(root / "pets" / "cat" / "0.png")
    Image.new("RGB", (4, 4), "black").save(root / "pets" / "dog" / "0.png")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A readable image next to the data root, not under it."""
    secret = tmp_path / "secret"
    secret.mkdir()
    Image.new("RGB", (5, 5), "blue").save(secret / "private.png")
    return secret


def refused_sources(published: Path, outside: Path) -> list[str]:
    (published / "escape").symlink_to(outside)
    (published / "leak.png").symlink_to(outside / "private.png")
    return [
        "/",
        "/:5000",
        "/etc",
        "/etc/shadow",
        "/etc/passwd",
        "/dev/zero",
        "~",
        "no/such/file.png",
        str(outside / "private.png"),
        str(outside),
        f"{outside}:0",
        str(published / ".." / "secret" / "private.png"),
        str(published / "escape" / "private.png"),
        str(published / "leak.png"),
        f"{published}/../secret:0",
        str(published.parent),
    ]


def test_a_browser_gets_one_sentence_for_every_path_outside_the_data_roots(
    published: Path, outside: Path
) -> None:
    access = Access((published.resolve(),))
    for source in refused_sources(published, outside):
        with pytest.raises(ImageSourceError) as caught:
            load_image(source, access=access)
        assert str(caught.value) == NOT_PUBLISHED, source
    assert str(outside) not in NOT_PUBLISHED and "/" not in NOT_PUBLISHED


def test_a_browser_opens_files_and_imagefolders_under_a_data_root(published: Path) -> None:
    access = Access((published.resolve(),))
    assert load_image(str(published / "photo.png"), access=access).image.size == (8, 6)
    dog = load_image(f"{published / 'pets'}:1", access=access)
    assert dog.label == "dog"
    with pytest.raises(ImageSourceError, match="is a folder; pick one of its 2 images"):
        load_image(str(published / "pets"), access=access)
    assert load_image("sample:coffee", access=access).image.size == (600, 400)
    assert load_image("fashion-mnist:test:0", access=access).label == "Ankle boot"


def test_special_files_under_a_data_root_are_refused_like_anything_else(published: Path) -> None:
    os.mkfifo(published / "pipe.png")
    with pytest.raises(ImageSourceError) as caught:
        load_image(str(published / "pipe.png"), access=Access((published.resolve(),)))
    assert str(caught.value) == NOT_PUBLISHED


def test_no_data_root_means_no_paths_at_all(published: Path) -> None:
    access = Access(())
    with pytest.raises(ImageSourceError, match="^That source is not published"):
        load_image(str(published / "photo.png"), access=access)
    with pytest.raises(ImageSourceError, match="^That source is not published"):
        parse_dataset(str(published / "pets"), access)


def test_the_cli_keeps_full_access(outside: Path) -> None:
    assert load_image(str(outside / "private.png")).image.size == (5, 5)
    assert load_image(str(outside / "private.png"), access=FULL_ACCESS).image.size == (5, 5)
    with pytest.raises(ImageSourceError, match="no such file"):
        load_image(str(outside / "missing.png"))


def test_datasets_follow_the_same_policy(published: Path, outside: Path) -> None:
    access = Access((published.resolve(),))
    for name in ("/", "/usr", str(outside), f"{published}/..", "~"):
        for read in (
            lambda text: parse_dataset(text, access),
            lambda text: open_source(text, access),
            lambda text: labelled_dataset(text, access),
        ):
            with pytest.raises(ImageSourceError) as caught:
                read(name)
            assert str(caught.value) == NOT_PUBLISHED, name
    assert open_source(str(published / "pets"), access).size == 2
    assert labelled_dataset(str(published / "pets"), access).classes == ("cat", "dog")
    assert parse_dataset("fashion-mnist:test", access).split == "test"
    assert parse_dataset("samples", access).kind == "samples"


def test_folder_walks_are_bounded(published: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(5):
        Image.new("RGB", (2, 2)).save(published / "pets" / "cat" / f"extra{index}.png")
    monkeypatch.setattr(data, "MAX_FOLDER_ENTRIES", 4)
    with pytest.raises(ImageSourceError, match="more than 4 entries"):
        data.image_folder(published / "pets")


def test_data_roots_come_from_the_environment(
    published: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    value = os.pathsep.join([str(published), str(tmp_path / "missing"), f"{other}/."])
    assert data_roots_from(value) == (published.resolve(), other.resolve())
    monkeypatch.setenv("CONVLENS_DATA_ROOTS", value)
    assert browser_access().data_roots == (published.resolve(), other.resolve())
    monkeypatch.delenv("CONVLENS_DATA_ROOTS")
    assert browser_access().data_roots == ()
    monkeypatch.setenv("CONVLENS_MAX_TRAINERS", "5")
    assert max_trainers() == 5
    for unreadable in ("many", "²", "-1"):
        monkeypatch.setenv("CONVLENS_MAX_TRAINERS", unreadable)
        assert max_trainers() == 2


def test_convlens_app_takes_its_own_options_and_passes_the_rest_to_streamlit(
    published: Path, tmp_path: Path
) -> None:
    environment, rest = serving_environment(
        [
            "--data-root",
            str(published),
            "--server.port",
            "8600",
            f"--data-root={tmp_path}",
            "--max-trainers",
            "3",
            "--instructor-key",
            "s3cret",
        ]
    )
    assert environment == {
        "CONVLENS_DATA_ROOTS": os.pathsep.join([str(published.resolve()), str(tmp_path.resolve())]),
        "CONVLENS_MAX_TRAINERS": "3",
        "CONVLENS_INSTRUCTOR_KEY": "s3cret",
    }
    assert rest == ["--server.port", "8600"]
    assert serving_environment(["--server.port", "8600"]) == ({}, ["--server.port", "8600"])
    for bad, message in (
        (["--data-root", str(tmp_path / "missing")], "is not a folder"),
        (["--max-trainers", "-1"], "0 or more"),
        (["--instructor-key", " "], "must not be empty"),
    ):
        with pytest.raises(AppOptionError, match=message):
            serving_environment(bad)


def test_convlens_app_reads_the_projects_streamlit_config_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The room's safety settings (no tracebacks in browsers) live in the project's
    .streamlit/config.toml, which Streamlit reads from the working directory."""
    import streamlit.web.cli

    from convlens.ui import launch

    started = {}

    def streamlit_main(args: list[str], prog_name: str) -> None:
        started["cwd"], started["args"] = Path.cwd(), args

    monkeypatch.setattr(streamlit.web.cli, "main", streamlit_main)
    monkeypatch.setattr(launch, "start_up", lambda: None)
    monkeypatch.chdir(tmp_path)
    launch.run_app(["--server.port", "8600"])
    assert started["cwd"] == launch.APP.parent
    assert started["args"] == ["run", str(launch.SERVED_APP), "--server.port", "8600"]
    config = (started["cwd"] / ".streamlit" / "config.toml").read_text()
    assert 'showErrorDetails = "none"' in config


def test_the_projects_streamlit_config_is_read_by_streamlit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Options Streamlit does not know are only warned about: these must be read as set."""
    from streamlit import config

    from convlens.ui import launch

    monkeypatch.chdir(launch.APP.parent)
    config.get_config_options(force_reparse=True)
    try:
        assert config.get_option("global.maxCachedMessageAge") == 10
        assert config.get_option("client.showErrorDetails") == "none"
        assert config.get_option("runner.postScriptGC") is False
    finally:
        monkeypatch.undo()
        config.get_config_options(force_reparse=True)


def test_run_names_are_plain_names() -> None:
    for name in ("fashion_basecnn", "fashion_basecnn_x0.25", "my-run+2"):
        assert is_plain_name(name)
    for name in ("", "..", "../x", "/etc", "a/b", "~", ".hidden", "a\\b", "..a"):
        assert not is_plain_name(name), name


def test_the_app_keeps_images_small_and_their_cache_bounded_by_bytes() -> None:
    from convlens.data import LoadedImage
    from convlens.ui.cache import MAX_IMAGE_SIDE, BytesLRU, capped

    huge = LoadedImage("big", Image.new("RGB", (6000, 3000)), None, None)
    small = capped(huge)
    assert small.image.size == (MAX_IMAGE_SIDE, MAX_IMAGE_SIDE // 2) and small.source == "big"
    assert capped(small) is small

    cache = BytesLRU(max_bytes=3 * 100 * 100 * 3)
    loads: list[str] = []

    def loader(name: str):
        def load() -> LoadedImage:
            loads.append(name)
            return LoadedImage(name, Image.new("RGB", (100, 100)), None, None)

        return load

    for name in ("a", "b", "c", "a", "d", "e"):
        cache.get((name,), loader(name))
    assert loads == ["a", "b", "c", "d", "e"], "a hit does not load again"
    assert cache.total <= cache.max_bytes
    cache.get(("b",), loader("b"))
    assert loads[-1] == "b", "the least recently used entries went first"
    cache.clear()
    assert cache.total == 0
    cache.get(("e",), loader("e"))
    assert loads[-1] == "e", "a cleared cache loads again"


def test_kept_uploads_expire_by_age_then_by_size(tmp_path: Path) -> None:
    import time

    from convlens.paths import prune_uploads

    now = time.time()
    ages = {"old": 9 * 86400, "b": 300, "c": 200, "d": 100}
    for name, age in ages.items():
        path = tmp_path / name
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - age, now - age))
    deleted = prune_uploads(tmp_path, max_bytes=2000, max_age_s=7 * 86400)
    assert [path.name for path in deleted] == ["old", "b"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c", "d"]
    assert prune_uploads(tmp_path / "missing") == []


def test_a_large_image_is_shrunk_while_it_is_decoded(tmp_path: Path) -> None:
    for suffix in ("png", "jpg"):
        path = tmp_path / f"big.{suffix}"
        Image.new("RGB", (5000, 2500), "orange").save(path)
        assert load_image(str(path), max_side=1000).image.size == (1000, 500)
        assert load_image(str(path)).image.size == (5000, 2500), "the CLI keeps every pixel"
