"""Files handed out of the sandbox are taken as untrusted: plain files under the folder, capped."""

from __future__ import annotations

import io
import os
import tarfile
import threading
from pathlib import Path

from activities.sandbox_outputs import receive_outputs


def _member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    return info, data


def _send(members: list[tuple[tarfile.TarInfo, bytes]], target: Path, cap: int = 10**6):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    read, write = os.pipe()

    def writer() -> None:
        try:
            os.write(write, buffer.getvalue())
        except BrokenPipeError:
            pass
        finally:
            os.close(write)

    thread = threading.Thread(target=writer)
    thread.start()
    received = receive_outputs(read, target, cap)
    thread.join(timeout=5)
    return received


def test_plain_files_in_folders_are_received(tmp_path: Path) -> None:
    received = _send([_member("metrics.json", b"{}"), _member("plots/a/b.png", b"png")], tmp_path)

    assert received.files == ["metrics.json", "plots/a/b.png"] and received.notes == []
    assert (tmp_path / "plots" / "a" / "b.png").read_bytes() == b"png"


def test_names_leaving_the_folder_links_and_devices_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    received = _send(
        [
            _member("/etc/evil", b"abs"),
            _member("../escaped", b"up"),
            _member("a/../../escaped2", b"up"),
            _member("link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
            _member("hard", kind=tarfile.LNKTYPE, link="/etc/passwd"),
            _member("dev", kind=tarfile.CHRTYPE),
            _member("ok.txt", b"fine"),
        ],
        target,
    )

    assert received.files == ["ok.txt"]
    assert len(received.notes) == 6
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ok.txt", "out"]


def test_a_name_sent_twice_does_not_overwrite_the_first(tmp_path: Path) -> None:
    received = _send([_member("a.txt", b"first"), _member("a.txt", b"second")], tmp_path)

    assert received.files == ["a.txt"]
    assert (tmp_path / "a.txt").read_bytes() == b"first"
    assert "cannot be stored" in received.notes[0]


def test_a_stream_beyond_the_cap_is_cut_short(tmp_path: Path) -> None:
    received = _send(
        [_member("small.txt", b"s"), _member("big.bin", b"x" * 200_000)], tmp_path, cap=50_000
    )

    assert received.files == ["small.txt"]
    assert any("cut short" in note for note in received.notes)


def test_an_empty_stream_is_no_outputs_and_no_complaint(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(write)

    received = receive_outputs(read, tmp_path, 1000)

    assert received.files == [] and received.notes == []
