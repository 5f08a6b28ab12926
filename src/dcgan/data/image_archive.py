"""Raw anime images kept as one zip: entry names checked, junk entries sorted out by reason."""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from dcgan.errors import UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}
ARCHIVE_NAME = "archive.zip"


@dataclass(frozen=True)
class Entry:
    """One file in the archive, and why it is skipped before decoding (empty reason: decode it)."""

    name: str
    size: int
    skip_reason: str = ""


def skip_reason(name: str, size: int) -> str:
    """Why an entry is not an image to decode, from its name and size alone; '' when it is one."""
    path = PurePosixPath(name)
    if "__MACOSX" in path.parts or path.name.startswith("._"):
        return "macos-metadata"
    if path.name.lower() in SYSTEM_FILES:
        return "system-file"
    if size == 0:
        return "empty"
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return "not-an-image"
    return ""


def unsafe_name(name: str) -> bool:
    """True for names that would land outside the target folder if extracted."""
    posix = PurePosixPath(name.replace("\\", "/"))
    return posix.is_absolute() or ".." in posix.parts or bool(PureWindowsPath(name).drive)


def list_entries(archive_path: Path) -> list[Entry]:
    """List the file entries of the zip in name order.

    Raise UserError for the whole archive when one entry name points outside the target folder.
    """
    try:
        with zipfile.ZipFile(archive_path) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as exc:
        raise UserError(
            f"{archive_path}: not a readable zip archive ({exc}); download it again or give a folder of images"
        ) from None
    for info in infos:
        if unsafe_name(info.filename):
            raise UserError(
                f"{archive_path}: entry {info.filename!r} points outside the archive folder, so the whole "
                "archive is rejected; rebuild the zip with relative paths only"
            )
    infos.sort(key=lambda info: info.filename)
    return [Entry(info.filename, info.file_size, skip_reason(info.filename, info.file_size)) for info in infos]


def check_zip(path: Path, label: str) -> None:
    """Raise UserError unless ``path`` is a complete zip whose entries all stay inside its folder."""
    if not zipfile.is_zipfile(path):
        raise UserError(
            f"{label}: not a complete zip archive (no zip directory at its end, so it may be cut short, still "
            "downloading, or another kind of file); copy or download it again, or give a folder of images"
        )
    list_entries(path)


def store_archive(source: Path, dest: Path) -> Path:
    """Copy a zip, or pack a folder of files into a stored zip, at ``dest`` (via a temporary name)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if source.is_file():
        check_zip(source, f"data.anime.path = {str(source)!r}")
        shutil.copyfile(source, partial)
    else:
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())
        if not files:
            raise UserError(f"data.anime.path = {str(source)!r}: the folder is empty")
        # Every file goes in, junk included, so the report can count what was skipped.
        # Images are compressed already, so the zip stores them as they are.
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as archive:
            for path in files:
                archive.write(path, path.relative_to(source).as_posix())
    os.replace(partial, dest)
    return dest
