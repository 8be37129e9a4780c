"""Weights to take home: one model's files and manifest entry as a zip, and installing such a zip after checking
every file (weights are loaded into an architecture built from code, never deserialized as a model)."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

from .catalogue import SPECS, stem
from .data import sha256_file
from .store import (
    MANIFEST_NAME,
    USER_WEIGHTS_DIR,
    WeightsError,
    active_folder,
    entry_files,
    load_from,
    read_manifest,
    update_manifest,
    write_content_addressed,
)

ZIP_MANIFEST = "manifest.json"


def export_zip(name: str, dataset: str = "mnist", folder: Path | None = None) -> bytes:
    """One model's weights files and its manifest entry as a .zip, for `import_zip` on another studio."""
    folder = folder or active_folder(name, dataset)
    key = stem(name, dataset)
    entry = read_manifest(folder).get(key)
    if entry is None:
        raise WeightsError(f"no trained weights for {name} on {dataset} in {folder}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(ZIP_MANIFEST, json.dumps({key: entry}, indent=2))
        for record in entry_files(entry):
            archive.write(folder / record["file"], record["file"])
    return buffer.getvalue()


def import_zip(source, folder: Path | None = None) -> str:
    """Install a zip made by `export_zip` into `folder` (the user weights) after checking everything; return its
    key. Checked: one manifest entry for a model of the zoo, every file listed there present with its sha256, and
    every tensor's shape against the architecture built from code (weights are loaded, never deserialized as a
    model). A zip that fails any check raises WeightsError naming what failed; nothing installed changes."""
    folder = folder or USER_WEIGHTS_DIR
    try:
        archive = zipfile.ZipFile(source)
    except (OSError, zipfile.BadZipFile) as err:
        raise WeightsError(f"not a weights zip: {err}") from err
    with archive, tempfile.TemporaryDirectory() as staging:
        names = set(archive.namelist())
        if ZIP_MANIFEST not in names:
            raise WeightsError(f"the zip has no {ZIP_MANIFEST}; make one with the Train page's download button")
        try:
            manifest = json.loads(archive.read(ZIP_MANIFEST))
        except ValueError as err:
            raise WeightsError(f"its {ZIP_MANIFEST} is not JSON ({err})") from err
        if not isinstance(manifest, dict) or len(manifest) != 1:
            raise WeightsError(f"its {ZIP_MANIFEST} must hold exactly one model's entry")
        (key, entry), = manifest.items()
        name, dataset = entry.get("model"), entry.get("dataset")
        if name not in SPECS or dataset not in SPECS[name].datasets or key != stem(name, dataset):
            raise WeightsError(f"its manifest entry {key!r} names no model of this zoo ({name!r} on {dataset!r})")
        records = entry_files(entry)
        if not records:
            raise WeightsError(f"its manifest entry for {key} lists no weights files")
        for record in records:
            file = record.get("file", "")
            if Path(file).name != file or not file.startswith(f"{key}-"):
                raise WeightsError(f"its manifest names the file {file!r}, which is not a weights file of {key}")
            if file not in names:
                raise WeightsError(f"{file} is listed in its manifest but missing from the zip")
            (Path(staging) / file).write_bytes(archive.read(file))
            if sha256_file(Path(staging) / file) != record.get("sha256"):
                raise WeightsError(f"{file} does not match the sha256 in its manifest (changed or damaged)")
        staged = Path(staging)
        (staged / MANIFEST_NAME).write_text(json.dumps(manifest))
        try:
            load_from(staged, name, dataset)  # builds from code and loads every tensor: shapes must fit
        except WeightsError as err:
            raise WeightsError(str(err).split("; rebuild it with")[0].replace(str(staged) + "/", "")) from err
        folder.mkdir(parents=True, exist_ok=True)
        for record in records:  # content-addressed names: copying over an identical file changes nothing
            write_content_addressed(folder, record["file"].rsplit("-", 1)[0], "".join(Path(record["file"]).suffixes),
                                     lambda tmp, src=staged / record["file"]: shutil.copyfile(src, tmp))
        old = read_manifest(folder).get(key)
        update_manifest(key, {**entry, "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, folder)
        if old:
            keep = {r["file"] for r in records}
            for record in entry_files(old):
                if record["file"] not in keep:
                    (folder / record["file"]).unlink(missing_ok=True)
    return key
