"""Broken and unusual archives, built from the real anime sample: what is rejected, skipped, quarantined."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import ANIME_ZIP, run, write_params


def real_faces(count: int, start: int = 0) -> list[tuple[str, bytes]]:
    """Return ``count`` real JPEGs with distinct bytes from the anime sample, in name order."""
    with zipfile.ZipFile(ANIME_ZIP) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".jpg"))
        seen, faces = set(), []
        for name in names:
            payload = archive.read(name)
            if payload not in seen:
                seen.add(payload)
                faces.append((name, payload))
            if len(faces) == start + count:
                return faces[start:]
    raise AssertionError("not enough distinct faces in the sample")


def write_zip(path, entries: list[tuple[str, bytes]]):
    with zipfile.ZipFile(path, "w") as archive:
        for name, payload in entries:
            archive.writestr(name, payload)
    return path


def use_archive(project, path, **anime) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["anime"].update(source="archive", path=str(path), limit=None, min_images=5, **anime)
    write_params(project, params)


def set_ingest(project, **values) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"].update(values)
    write_params(project, params)


def report(project) -> dict:
    return json.loads((project / "data/validation/anime/report.json").read_text())


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("bad_name", ["../escape.jpg", "/tmp/absolute.jpg", "images/../../escape.jpg"])
def test_escaping_entry_rejects_archive(project, tmp_path, bad_name):
    faces = real_faces(10)
    archive = write_zip(tmp_path / "evil.zip", faces + [(bad_name, faces[0][1])])
    use_archive(project, archive)

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2
    assert f"entry {bad_name!r} points outside the archive folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data/raw/anime/archive.zip").exists()
    assert not (project / "data/validation/anime/manifest.csv").exists()
    assert not (tmp_path / "escape.jpg").exists()


def test_junk_entries_skipped_by_reason(project, ingest_flow, tmp_path):
    faces = real_faces(12)
    junk = [
        ("__MACOSX/images/._0.jpg", b"\x00\x05\x16\x07 resource fork"),
        ("images/._1.jpg", b"\x00\x05\x16\x07 resource fork"),
        ("images/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("Thumbs.db", b"\xd0\xcf\x11\xe0"),
        ("images/empty.jpg", b""),
        ("README.txt", b"anime faces"),
        ("images/meta.json", b"{}"),
    ]
    use_archive(project, write_zip(tmp_path / "junk.zip", faces + junk))

    result = ingest_flow("anime")

    assert result["accepted"] == 12
    assert result["skipped"] == {"empty": 1, "macos-metadata": 2, "not-an-image": 2, "system-file": 2}
    assert result["quarantined"] == {}
    saved = report(project)
    assert saved["files_seen"] == 19
    assert saved["images_decoded"] == 12


def cut_and_unterminated(tmp_path):
    faces = real_faces(40)
    (name_a, cut), (name_b, unterminated) = faces[3], faces[7]
    faces[3] = (name_a, cut[: len(cut) * 6 // 10])
    faces[7] = (name_b, unterminated[:-2])
    # Pillow's verify() passes both files; only a full decode finds them.
    for _, payload in (faces[3], faces[7]):
        Image.open(io.BytesIO(payload)).verify()
    return write_zip(tmp_path / "damaged.zip", faces), name_a, name_b


def test_damaged_jpegs_quarantined(project, ingest_flow, tmp_path):
    archive, cut_name, unterminated_name = cut_and_unterminated(tmp_path)
    use_archive(project, archive)
    set_ingest(project, max_bad_fraction=0.1)

    result = ingest_flow("anime")

    assert result["accepted"] == 38
    assert result["quarantined"] == {"truncated": 2}
    quarantine = pd.read_csv(project / "data/validation/anime/quarantine.csv")
    assert sorted(quarantine["name"]) == sorted([cut_name, unterminated_name])
    assert quarantine["detail"].str.contains("truncated").all()
    assert report(project)["bad_fraction"] == pytest.approx(2 / 40)


def test_damaged_jpegs_above_threshold_fail(project, tmp_path):
    archive, cut_name, _ = cut_and_unterminated(tmp_path)
    use_archive(project, archive)
    set_ingest(project, max_bad_fraction=0.02)

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert "2 of 40 image files (5.0%) are quarantined (2 truncated)" in errors[0]
    assert "above ingest.max_bad_fraction = 0.02" in errors[0]
    assert "quarantine.csv" in errors[0]
    # The GX wording of the same check stays in report.json, out of the error line.
    assert "failed 1 check(s)" in errors[0]
    assert "mostly" not in errors[0]
    quarantine = pd.read_csv(project / "data/validation/anime/quarantine.csv")
    assert cut_name in set(quarantine["name"])


def mode_samples() -> dict[str, bytes]:
    """Build one 48x40 image per mode, with a transparent left half where the mode has alpha."""
    rgba = Image.new("RGBA", (48, 40), (255, 0, 0, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 24, 40))
    palette = Image.new("P", (48, 40), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(0, (0, 0, 24, 40))
    palette.info["transparency"] = 0
    la = Image.new("LA", (48, 40), (100, 255))
    la.paste((0, 0), (0, 0, 24, 40))
    sixteen = Image.fromarray(np.full((40, 48), 256 * 200, dtype=np.uint16))
    return {
        "images/mode_L.png": encoded(Image.new("L", (48, 40), 77), "PNG"),
        "images/mode_LA.png": encoded(la, "PNG"),
        "images/mode_P.png": encoded(palette, "PNG"),
        "images/mode_RGBA.png": encoded(rgba, "PNG"),
        "images/mode_CMYK.jpg": encoded(Image.new("CMYK", (48, 40), (0, 255, 255, 0)), "JPEG"),
        "images/mode_I16.png": encoded(sixteen, "PNG"),
    }


def test_every_mode_becomes_rgb(project, ingest_flow, tmp_path):
    from dcgan.data.preprocess import preprocess

    samples = mode_samples()
    use_archive(project, write_zip(tmp_path / "modes.zip", real_faces(4) + list(samples.items())))

    result = ingest_flow("anime")
    stats = preprocess("anime", 32)

    assert result["accepted"] == 10
    assert report(project)["modes"] == {"CMYK": 1, "I;16": 1, "L": 1, "LA": 1, "P": 1, "RGB": 4, "RGBA": 1}
    images = np.load(project / "data/prepared/anime/images.npy")
    assert images.shape == (10, 3, 32, 32)
    assert stats["count"] == 10
    manifest = pd.read_csv(project / "data/validation/anime/manifest.csv", keep_default_na=False)
    row = {name: i for i, name in enumerate(manifest.loc[manifest["status"] == "accepted", "name"])}
    # Column 4 lies in the left half, which is transparent in the modes with alpha.
    pixel = {name: images[i][:, 16, 4] for name, i in row.items()}
    assert list(pixel["images/mode_RGBA.png"]) == [255, 255, 255]
    assert list(pixel["images/mode_P.png"]) == [255, 255, 255]
    assert list(pixel["images/mode_LA.png"]) == [255, 255, 255]
    assert list(images[row["images/mode_RGBA.png"]][:, 16, 28]) == [255, 0, 0]
    assert list(pixel["images/mode_L.png"]) == [77, 77, 77]
    assert list(pixel["images/mode_I16.png"]) == [200, 200, 200]
    red, green, blue = pixel["images/mode_CMYK.jpg"]
    assert red > 200
    assert green < 60
    assert blue < 60


def test_sizes_cropped_tiny_skipped(project, ingest_flow, tmp_path):
    from dcgan.data.preprocess import preprocess

    wide = Image.new("RGB", (220, 100), (0, 0, 255))
    wide.paste((0, 255, 0), (60, 0, 160, 100))  # the centered 100x100 square is green
    tall = Image.new("RGB", (25, 60), (0, 255, 0))
    sizes = {
        "images/wide.png": encoded(wide, "PNG"),
        "images/tall.png": encoded(tall, "PNG"),
        "images/tiny.png": encoded(Image.new("RGB", (12, 40), 0), "PNG"),
    }
    use_archive(project, write_zip(tmp_path / "sizes.zip", real_faces(4) + list(sizes.items())), min_side=16)

    result = ingest_flow("anime")
    preprocess("anime", 64)

    assert result["accepted"] == 6
    assert result["skipped"] == {"too-small": 1}
    histogram = report(project)["shorter_side_histogram"]
    assert histogram == {"0-15": 1, "16-31": 1, "64-127": 5}
    images = np.load(project / "data/prepared/anime/images.npy")
    assert images.shape == (6, 3, 64, 64)
    names = [n for n in sorted([n for n, _ in real_faces(4)] + list(sizes)) if n != "images/tiny.png"]
    wide_image = images[names.index("images/wide.png")]
    # Only the green center square is kept.
    assert (wide_image[1] > 250).all()
    assert (wide_image[2] < 5).all()


@pytest.mark.parametrize("drop", [True, False])
def test_duplicates_counted_and_dropped(project, ingest_flow, tmp_path, drop):
    faces = real_faces(10)
    copies = [("images/copy_a.jpg", faces[2][1]), ("images/copy_b.jpg", faces[2][1]), ("images/zcopy.jpg", faces[5][1])]
    use_archive(project, write_zip(tmp_path / "dups.zip", faces + copies), drop_duplicates=drop)

    result = ingest_flow("anime")

    duplicates = report(project)["duplicates"]
    assert duplicates["copies"] == 3
    assert duplicates["distinct"] == 10
    assert duplicates["removed"] == (3 if drop else 0)
    assert result["accepted"] == (10 if drop else 13)
    manifest = pd.read_csv(project / "data/validation/anime/manifest.csv", keep_default_na=False).set_index("name")
    assert manifest.loc["images/zcopy.jpg", "duplicate_of"] == faces[5][0]


def test_cut_user_zip_rejected_and_kept(project, tmp_path):
    whole = write_zip(tmp_path / "whole.zip", real_faces(20))
    cut = tmp_path / "cut.zip"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    use_archive(project, cut)

    result = run(["python", "flows/ingest.py", "anime"], cwd=project, check=False)

    assert result.returncode == 2
    assert f"data.anime.path = '{cut}': not a complete zip archive" in result.stderr
    assert "copy or download it again" in result.stderr
    assert "Traceback" not in result.stderr
    assert cut.is_file()
    assert not (project / "data/raw/anime/archive.zip").exists()
