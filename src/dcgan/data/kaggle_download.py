"""Download the anime faces archive with the official Kaggle client."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path

from dcgan.errors import UserError

log = logging.getLogger(__name__)

CREDENTIAL_HELP = (
    "Kaggle credentials not found; looked in $KAGGLE_API_TOKEN, "
    "{config}/access_token, $KAGGLE_USERNAME with $KAGGLE_KEY, and {config}/kaggle.json. "
    "Create a token at kaggle.com > Settings > API, or download the archive yourself and set "
    "data.anime.source: archive with data.anime.path pointing at the zip or image folder"
)


def _config_dir() -> str:
    return os.environ.get("KAGGLE_CONFIG_DIR") or str(Path("~/.kaggle").expanduser())


def authenticated_api():
    """Import the Kaggle client lazily and authenticate, turning its exit into a UserError."""
    # The package authenticates at import time and prints help on failure,
    # so its output is captured here and replaced by one clear message.
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise UserError(CREDENTIAL_HELP.format(config=_config_dir())) from None
    return api


def download_archive(slug: str, dest: Path) -> Path:
    """Download ``slug`` as one zip and move it to ``dest``."""
    if "/" not in slug:
        raise UserError(
            f"data.anime.slug = {slug!r} is invalid: expected owner/dataset, "
            "for example splcher/animefacedataset"
        )
    api = authenticated_api()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        log.info("downloading Kaggle dataset %s", slug)
        try:
            api.dataset_download_files(slug, path=tmp, quiet=False, unzip=False)
        except Exception as exc:  # the client raises requests' HTTPError and others
            raise UserError(f"Kaggle download of {slug} failed: {exc}") from None
        zips = sorted(Path(tmp).glob("*.zip"))
        if len(zips) != 1:
            raise UserError(f"Kaggle download of {slug} produced {len(zips)} zip files, expected 1")
        os.replace(zips[0], dest)
    return dest
