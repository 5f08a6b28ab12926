"""The ingest flow on the real anime sample: a zip and a folder of images."""

from __future__ import annotations

import json
import zipfile

import pandas as pd
import yaml

from conftest import ANIME_ZIP, run, write_params


def set_anime(project, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["anime"].update(values)
    write_params(project, params)


def test_archive_zip_kept_as_one_file(project, ingest_flow):
    result = ingest_flow("anime")

    # The first 200 entries by name hold 5 byte-identical copies, dropped by default.
    assert result == {
        "dataset": "anime", "success": True, "files_seen": 200, "accepted": 195,
        "skipped": {"duplicate": 5}, "quarantined": {},
    }
    raw = project / "data/raw/anime"
    assert [p.name for p in raw.iterdir()] == ["archive.zip"]
    assert (raw / "archive.zip").stat().st_size == ANIME_ZIP.stat().st_size
    manifest = pd.read_csv(project / "data/validation/anime/manifest.csv", keep_default_na=False)
    assert len(manifest) == 200
    assert manifest["name"].str.startswith("images/").all()
    assert manifest["decoded"].all()
    assert set(manifest["mode"]) == {"RGB"}
    assert manifest["sha256"].str.len().eq(64).all()
    copies = manifest[manifest["reason"] == "duplicate"]
    originals = manifest.set_index("name").loc[copies["duplicate_of"], "sha256"]
    assert list(originals) == list(copies["sha256"])


def test_folder_source_packed_into_zip(project, ingest_flow, tmp_path):
    folder = tmp_path / "faces"
    with zipfile.ZipFile(ANIME_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:60]
        for name in names:
            archive.extract(name, folder)
    (folder / "notes.txt").write_text("not an image")
    set_anime(project, source="archive", path=str(folder), limit=None, drop_duplicates=False)

    result = ingest_flow("anime")

    assert result["accepted"] == 60
    assert result["skipped"] == {"not-an-image": 1}
    with zipfile.ZipFile(project / "data/raw/anime/archive.zip") as packed:
        assert sorted(packed.namelist()) == sorted(names + ["notes.txt"])


def test_undecodable_image_fails_validation(project, ingest_flow, tmp_path):
    broken_zip = tmp_path / "broken.zip"
    with zipfile.ZipFile(ANIME_ZIP) as source, zipfile.ZipFile(broken_zip, "w") as target:
        names = sorted(n for n in source.namelist() if n.endswith(".jpg"))[:60]
        for name in names[:-1]:
            target.writestr(name, source.read(name))
        payload = source.read(names[-1])
        target.writestr(names[-1], payload[: len(payload) * 6 // 10])
    set_anime(project, path=str(broken_zip), limit=None)

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2
    assert "1 of 60 image files (1.7%) are quarantined (1 truncated)" in result.stderr
    assert "ingest.max_bad_fraction = 0.01" in result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((project / "data/validation/anime/report.json").read_text())
    assert report["success"] is False
    assert report["quarantined"] == {"truncated": 1}


def test_missing_archive_path_is_named(project, tmp_path):
    missing = tmp_path / "animefacedataset.zip"
    set_anime(project, path=str(missing))

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2
    assert f"data.anime.path = '{missing}': not found" in result.stderr
    assert "Traceback" not in result.stderr
