"""Raw anime images kept as one zip, whether they came as a zip or a folder."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from dcgan.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
ARCHIVE_NAME = "archive.zip"


def is_image_name(name: str) -> bool:
    path = PurePosixPath(name)
    if path.name.startswith(".") or "__MACOSX" in path.parts:
        return False
    return path.suffix.lower() in IMAGE_SUFFIXES


def store_archive(source: Path, dest: Path) -> Path:
    """Copy a zip, or pack a folder of images into a stored zip, at ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise UserError(f"data.anime.path = {str(source)!r}: not a zip archive; give a .zip or a folder")
        shutil.copyfile(source, partial)
    else:
        files = sorted(p for p in source.rglob("*") if p.is_file() and is_image_name(p.name))
        if not files:
            raise UserError(f"data.anime.path = {str(source)!r}: the folder contains no images")
        # Images are compressed already, so the zip stores them as they are.
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in files:
                archive.write(path, path.relative_to(source).as_posix())
    os.replace(partial, dest)
    return dest


def iter_images(archive_path: Path, limit: int | None = None) -> Iterator[tuple[str, bytes]]:
    """Yield (entry name, bytes) for each image entry, in name order, reading every byte."""
    try:
        with zipfile.ZipFile(archive_path) as archive:
            names = sorted(
                info.filename for info in archive.infolist() if not info.is_dir() and is_image_name(info.filename)
            )
            if limit is not None:
                names = names[:limit]
            for name in names:
                yield name, archive.read(name)
    except zipfile.BadZipFile as exc:
        raise UserError(f"{archive_path}: damaged zip archive ({exc}); delete it and ingest again") from None


def read_entries(archive_path: Path, names: list[str]) -> Iterator[tuple[str, bytes]]:
    """Yield (name, bytes) for the given entries of the archive."""
    with zipfile.ZipFile(archive_path) as archive:
        for name in names:
            yield name, archive.read(name)
