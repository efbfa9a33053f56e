"""A DICOMDIR written by `export_study` as dcmtk reads it: dcmdump's records, and dcmmkdir finding every instance.

dcmtk is a required peer here: without it these tests fail, they do not skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from app.library import Library, import_paths
from app.library.export import export_study
from tests.conftest import SAMPLE

SAMPLE_STUDY = "1.2.826.0.1.3680043.8.498.12260200752144704420035143382027889823"
_RECORD = re.compile(r'^\s*\(fffe,e000\) na "Directory Record" (\S+)')
_VALUE = re.compile(r"^\s*\((\w{4}),(\w{4})\) \w\w \[(.*?)\]")


def dcmtk(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"dcmtk's {tool} is not installed: these checks need it (Debian/Ubuntu: apt-get install dcmtk)")
    return path


@pytest.fixture
def library(tmp_path):
    lib = Library(root=tmp_path / "library", microchip_issuers=())
    assert import_paths([SAMPLE], library=lib).count("imported") == 25
    yield lib
    lib.close()


def records(dump: str) -> list[dict]:
    """dcmdump's text of a DICOMDIR as records: type plus the top-level values of each."""
    out: list[dict] = []
    depth = 0
    for line in dump.splitlines():
        match = _RECORD.match(line)
        if match:
            out.append({"type": match.group(1)})
            depth = 0
            continue
        if not out:
            continue
        if "(fffe,e000) na (Item" in line:  # an item of a sequence inside the record
            depth += 1
        elif "(fffe,e00d) na (ItemDelimitationItem" in line:
            depth -= 1
        match = _VALUE.match(line)
        if match and depth == 0:
            out[-1][f"{match.group(1)},{match.group(2)}".lower()] = match.group(3)
    return out


def run(args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("anonymize", [False, True], ids=["plain", "anonymised"])
def test_dcmdump_reads_every_record(library, tmp_path, anonymize):
    dcmdump = dcmtk("dcmdump")
    root = tmp_path / "usb"
    result = export_study(SAMPLE_STUDY, root, format="dicomdir", anonymize=anonymize, library=library)
    proc = run([dcmdump, "--no-uid-names", str(root / "DICOMDIR")])
    assert proc.returncode == 0, proc.stderr
    assert "E:" not in proc.stderr and "W:" not in proc.stderr, proc.stderr
    assert "[1.2.840.10008.1.3.10]" in proc.stdout  # Media Storage Directory Storage
    found = records(proc.stdout)
    kinds = [r["type"] for r in found]
    assert (kinds.count("PATIENT"), kinds.count("STUDY"), kinds.count("SERIES"), kinds.count("IMAGE")) == (1, 1, 2, 25)

    patient = found[kinds.index("PATIENT")]
    assert patient["0010,2201"] == "Canine" and patient["0010,2292"] == "Golden Retriever"
    study = found[kinds.index("STUDY")]
    assert study["0020,000d"] == result.exported_study_uid
    assert study["0020,0010"] and study["0008,0020"] == "20261102"  # type 1 keys have values
    if anonymize:
        assert patient["0010,0020"].startswith("ANON-") and "Hendricks" not in proc.stdout
    else:
        assert patient["0010,0020"] == "VET-000123" and patient["0010,2297"] == "Hendricks^Anna"

    images = [r for r in found if r["type"] == "IMAGE"]
    files = set()
    for image in images:
        file_id = image["0004,1500"].split("\\")
        assert all(re.fullmatch(r"[A-Z0-9_]{1,8}", part) for part in file_id), file_id
        path = root.joinpath(*file_id)
        assert path.is_file(), path
        files.add(path)
        head = run([dcmdump, "-q", "--no-uid-names", "+P", "0008,0018", "+P", "0002,0010", str(path)])
        assert head.returncode == 0, head.stderr
        assert f"[{image['0004,1511']}]" in head.stdout  # the record's SOP instance is the file's
        assert f"[{image['0004,1512']}]" in head.stdout  # and so is its transfer syntax
    assert files == set(result.paths[1:])
    if not anonymize:
        sops = {r.sop_uid for r in library.instances(study_uid=SAMPLE_STUDY)}
        assert {r["0004,1511"] for r in images} == sops


@pytest.mark.parametrize("anonymize", [False, True], ids=["plain", "anonymised"])
def test_dcmmkdir_finds_every_instance_in_our_dicomdir(library, tmp_path, anonymize):
    """dcmmkdir --append loads our DICOMDIR and checks each file against it: it must know all 25 already.

    The sample is RLE Lossless, which the general purpose CD profile does not list: -Nxc lets that pass
    as a warning. It runs on a copy, as --append rewrites the DICOMDIR.
    """
    dcmmkdir = dcmtk("dcmmkdir")
    root = tmp_path / "usb"
    export_study(SAMPLE_STUDY, root, format="dicomdir", anonymize=anonymize, library=library)
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file() and p.name != "DICOMDIR")
    assert len(files) == 25
    proc = run([dcmmkdir, "--append", "--no-backup", "--no-xfer-check", *files], cwd=copy)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    errors = [line for line in output.splitlines() if line.startswith(("E:", "F:"))]
    assert not errors, output
    known = [line for line in output.splitlines() if "directory record for this SOP instance already exists" in line]
    assert len(known) == 25, output
    unexpected = [line for line in output.splitlines() if line.startswith("W:") and line not in known
                  and "LittleEndianExplicit expected" not in line]
    assert not unexpected, output
