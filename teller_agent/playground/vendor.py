"""The pinned browser SDK the playground page runs: ``livekit-client`` from the npm registry.

The page must work with no network beyond the machine it runs on, so the SDK's self-contained
UMD build ships inside this package (``static/vendor/``, with its Apache-2.0 licence) instead of
coming from a CDN. ``static/vendor/livekit-client.json`` records where it came from: the npm
version, the registry tarball's ``integrity`` (sha512, as in a package-lock) and the file's own
sha256, which :func:`check_vendored` verifies.

Refresh it (needs ``npm``)::

    python -m teller_agent.playground.vendor 2.23.0
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: The livekit-client version the page is written and tested against.
LIVEKIT_CLIENT_VERSION = "2.23.0"
VENDOR_DIR = Path(__file__).parent / "static" / "vendor"
SDK_FILE = "livekit-client.umd.js"
PROVENANCE_FILE = "livekit-client.json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_vendored(vendor_dir: Path = VENDOR_DIR) -> dict:
    """The provenance record of the vendored SDK, after checking that the file matches it.

    Raises:
        FileNotFoundError: the SDK or its record is missing (a broken install: reinstall teller-agent,
            or refresh it with ``python -m teller_agent.playground.vendor``).
        ValueError: the file's sha256 or version differs from the record / :data:`LIVEKIT_CLIENT_VERSION`.
    """
    record_path, sdk = vendor_dir / PROVENANCE_FILE, vendor_dir / SDK_FILE
    for p in (record_path, sdk):
        if not p.is_file():
            raise FileNotFoundError(f"the playground's browser SDK is missing ({p}): reinstall teller-agent, or "
                                    f"run `python -m teller_agent.playground.vendor {LIVEKIT_CLIENT_VERSION}`")
    record = json.loads(record_path.read_text())
    if record.get("version") != LIVEKIT_CLIENT_VERSION:
        raise ValueError(f"vendored livekit-client is {record.get('version')}, the page expects "
                         f"{LIVEKIT_CLIENT_VERSION}: run `python -m teller_agent.playground.vendor "
                         f"{LIVEKIT_CLIENT_VERSION}`")
    if sha256(sdk) != record.get("sha256"):
        raise ValueError(f"{sdk} does not match its recorded sha256 (edited by hand?): refresh it with "
                         f"`python -m teller_agent.playground.vendor {LIVEKIT_CLIENT_VERSION}`")
    return record


def fetch(version: str = LIVEKIT_CLIENT_VERSION, vendor_dir: Path = VENDOR_DIR) -> dict:
    """Download ``livekit-client@version`` with ``npm pack`` and vendor its UMD build and licence.

    Raises:
        FileNotFoundError: ``npm`` is not installed.
        subprocess.CalledProcessError: npm failed (offline, unknown version).
    """
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm is needed to refresh the vendored livekit-client: install Node.js")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([npm, "pack", f"livekit-client@{version}", "--json", "--pack-destination", tmp],
                             check=True, capture_output=True, text=True).stdout
        info = json.loads(out)[0]
        with tarfile.open(Path(tmp) / info["filename"]) as tar:
            tar.extractall(tmp, members=[m for m in tar.getmembers()
                                         if m.name in (f"package/dist/{SDK_FILE}", "package/LICENSE")],
                           filter="data")
        vendor_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "package" / "dist" / SDK_FILE, vendor_dir / SDK_FILE)
        shutil.copyfile(Path(tmp) / "package" / "LICENSE", vendor_dir / "livekit-client.LICENSE")
    record = {"package": "livekit-client", "version": info["version"], "registry": "https://registry.npmjs.org",
              "file": f"dist/{SDK_FILE}", "integrity": info["integrity"], "sha256": sha256(vendor_dir / SDK_FILE),
              "license": "Apache-2.0"}
    (vendor_dir / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


if __name__ == "__main__":
    print(json.dumps(fetch(sys.argv[1] if len(sys.argv) > 1 else LIVEKIT_CLIENT_VERSION), indent=2))
