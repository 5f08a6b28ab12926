"""The ingest flow on the real anime sample: a zip, a folder, Kaggle without credentials."""

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

    assert result == {"dataset": "anime", "rows": 200, "success": True}
    raw = project / "data/raw/anime"
    assert [p.name for p in raw.iterdir()] == ["archive.zip"]
    assert (raw / "archive.zip").stat().st_size == ANIME_ZIP.stat().st_size
    manifest = pd.read_csv(project / "data/validation/anime/manifest.csv")
    assert len(manifest) == 200
    assert manifest["name"].str.startswith("images/").all()
    assert manifest["decodable"].all()
    assert set(manifest["mode"]) == {"RGB"}
    assert manifest["sha256"].str.len().eq(64).all()


def test_folder_source_packed_into_zip(project, ingest_flow, tmp_path):
    folder = tmp_path / "faces"
    with zipfile.ZipFile(ANIME_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))[:60]
        for name in names:
            archive.extract(name, folder)
    (folder / "notes.txt").write_text("not an image")
    set_anime(project, source="archive", path=str(folder), limit=None)

    result = ingest_flow("anime")

    assert result["rows"] == 60
    with zipfile.ZipFile(project / "data/raw/anime/archive.zip") as packed:
        assert sorted(packed.namelist()) == names


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
    assert "anime manifest failed 1 expectation(s)" in result.stderr
    assert "decodable" in result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads((project / "data/validation/anime/report.json").read_text())
    assert report["success"] is False


def test_missing_archive_path_is_named(project, tmp_path):
    missing = tmp_path / "animefacedataset.zip"
    set_anime(project, path=str(missing))

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2
    assert f"data.anime.path = '{missing}': not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_kaggle_without_credentials_lists_places(project, tmp_path):
    set_anime(project, source="kaggle", path=None)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "KAGGLE_CONFIG_DIR": str(home / ".kaggle")}
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        env[name] = None

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, env=env, check=False)

    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    message = errors[0]
    assert message.startswith("error: Kaggle credentials not found")
    for place in ("KAGGLE_API_TOKEN", "access_token", "KAGGLE_USERNAME", "KAGGLE_KEY", "kaggle.json"):
        assert place in message
    assert "data.anime.source: archive" in message
    assert "Traceback" not in result.stderr
    assert not (project / "data/raw/anime/archive.zip").exists()
