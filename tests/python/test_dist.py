"""Ways to install kaos other than a checkout: `make dist`'s tarball (the binary, the seccomp
profile, the README and a SHA-256 sum, the same bytes for the same commit) and
`cargo install --locked --path .`."""

import hashlib
import os
import pathlib
import subprocess
import tarfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def make_dist():
    result = subprocess.run(["make", "--no-print-directory", "dist"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    tarballs = list((ROOT / "target/dist").glob("kaos-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    return tarballs[0]


def test_the_release_tarball_holds_what_a_user_needs_and_its_sum(tmp_path):
    tarball = make_dist()
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert pathlib.Path(f"{tarball}.sha256").read_text() == f"{digest}  {tarball.name}\n"
    top = tarball.name.removesuffix(".tar.gz")
    with tarfile.open(tarball) as archive:
        assert sorted(archive.getnames()) == [top, f"{top}/README.md", f"{top}/kaos", f"{top}/kaos-seccomp.json"]
        archive.extractall(tmp_path, filter="data")
    unpacked = tmp_path / top
    assert (unpacked / "kaos-seccomp.json").read_bytes() == (ROOT / "deploy/seccomp/kaos-seccomp.json").read_bytes()
    assert (unpacked / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()
    assert os.access(unpacked / "kaos", os.X_OK)
    version = subprocess.run([str(unpacked / "kaos"), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("kaos "), version.stdout
    sections = subprocess.run(["readelf", "-S", str(unpacked / "kaos")], capture_output=True, text=True, check=True)
    assert ".symtab" not in sections.stdout and ".debug_info" not in sections.stdout, "stripped"
    assert hashlib.sha256(make_dist().read_bytes()).hexdigest() == digest, "the same commit, the same archive"


def test_cargo_install_from_the_checkout(tmp_path):
    # The checkout's target directory: the release build this run made serves as is.
    result = subprocess.run(["cargo", "install", "--locked", "--path", ".", "--root", str(tmp_path),
                             "--target-dir", "target"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    version = subprocess.run([str(tmp_path / "bin/kaos"), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("kaos "), version.stdout
