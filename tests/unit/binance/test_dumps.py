"""Dump archives: chunked parsing keeps every byte and row; bad checksums and corrupt zips are refused."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from btcpipe.binance.dumps import parse_checksum, read_archive
from btcpipe.binance.rest_parsing import dump_csv_table
from btcpipe.domain.errors import ChecksumMismatchError, CorruptArchiveError, DataError, MalformedRecordError

NAME = "BTCUSDT-trades-2025-01-01.zip"


def _zip(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, data)
    return buf.getvalue()


@pytest.fixture
def trades_csv(shared_data: Path) -> bytes:
    return (shared_data / "excerpts" / "BTCUSDT-trades-2025-01-01.head210.csv").read_bytes()


def test_chunked_read_keeps_every_byte_and_row(trades_csv: bytes) -> None:
    unit, chunks = read_archive("trades", _zip("BTCUSDT-trades-2025-01-01.csv", trades_csv), NAME, chunk_bytes=1000)
    assert unit == "us"
    assert len(chunks) > 5
    assert b"".join(c.raw for c in chunks) == trades_csv
    assert all(c.raw.endswith(b"\n") for c in chunks)
    whole = pa.concat_tables([c.table for c in chunks])
    assert whole.equals(dump_csv_table("trades", trades_csv))


def test_ms_era_archive_reports_ms_and_converts(shared_data: Path) -> None:
    csv = (shared_data / "excerpts" / "BTCUSDT-trades-2021-01-01.rows56023.head218.csv").read_bytes()
    unit, chunks = read_archive("trades", _zip("BTCUSDT-trades-2021-01-01.csv", csv),
                                "BTCUSDT-trades-2021-01-01.zip", chunk_bytes=4096)
    assert unit == "ms"
    assert chunks[0].table.column("ts_event")[0].as_py() == 1609462631341000


def test_file_whose_chunks_switch_units_is_refused(trades_csv: bytes) -> None:
    ms_row = b"1,10.00000000,1.00000000,10.00000000,1609462631341,True,True\n"
    with pytest.raises(MalformedRecordError, match="nothing written"):
        read_archive("trades", _zip("BTCUSDT-trades-2025-01-01.csv", trades_csv + ms_row * 50), NAME,
                     chunk_bytes=512)


def test_archive_that_is_not_a_zip_is_refused() -> None:
    with pytest.raises(CorruptArchiveError, match="not a readable zip"):
        read_archive("trades", b"PK\x03\x04 this is not a zip at all", NAME)


def test_archive_with_damaged_compressed_data_is_refused(trades_csv: bytes) -> None:
    data = bytearray(_zip("BTCUSDT-trades-2025-01-01.csv", trades_csv * 20))
    # Flip bytes in the middle of the deflate stream: the CRC (or inflate) must catch it.
    middle = len(data) // 2
    for i in range(middle, middle + 16):
        data[i] ^= 0xFF
    with pytest.raises(CorruptArchiveError, match="corrupt"):
        read_archive("trades", bytes(data), NAME)


def test_archive_without_the_expected_csv_member_is_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.csv", b"1\n")
        zf.writestr("b.csv", b"2\n")
    with pytest.raises(CorruptArchiveError, match="expected the member"):
        read_archive("trades", buf.getvalue(), NAME)


def test_klines_are_not_a_dump_kind() -> None:
    with pytest.raises(DataError, match="not 'klines'"):
        read_archive("klines", b"", NAME)  # type: ignore[arg-type]


def test_checksum_file_is_parsed_and_checked_for_its_name() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    assert parse_checksum(f"{sha}  {NAME}".encode(), NAME) == sha
    assert parse_checksum(f"{sha.upper()}  {NAME}\n".encode(), NAME) == sha
    with pytest.raises(ChecksumMismatchError, match="names another file"):
        parse_checksum(f"{sha}  BTCUSDT-trades-2024-01-01.zip".encode(), NAME)
    with pytest.raises(ChecksumMismatchError, match="does not hold a sha256"):
        parse_checksum(b"<html>404</html>", NAME)


def test_real_published_checksum_sidecar_parses(shared_data: Path) -> None:
    sidecar = shared_data / "excerpts" / "provenance" / "BTCUSDT-aggTrades-2024-04-20.zip.CHECKSUM"
    sha = parse_checksum(sidecar.read_bytes(), "BTCUSDT-aggTrades-2024-04-20.zip")
    assert sha == "08bfbf749848b1e0cf33287817b795bfae2a218f85aa4262821e3eb28e861232"


def _zip_with(method: int, data: bytes) -> bytearray:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr("BTCUSDT-trades-2025-01-01.csv", data)
    return bytearray(buf.getvalue())


def test_archive_with_a_damaged_lzma_stream_is_refused_as_corrupt(trades_csv: bytes) -> None:
    data = _zip_with(zipfile.ZIP_LZMA, trades_csv)
    at = 30 + len("BTCUSDT-trades-2025-01-01.csv") + 4  # local header, name, LZMA version + properties size
    data[at : at + 5] = b"\xff" * 5  # the LZMA properties: lzma raises LZMAError
    with pytest.raises(CorruptArchiveError, match="LZMAError"):
        read_archive("trades", bytes(data), NAME)


def test_archive_with_an_unknown_compression_method_is_refused_as_corrupt(trades_csv: bytes) -> None:
    data = _zip_with(zipfile.ZIP_STORED, trades_csv)
    data[8:10] = (99).to_bytes(2, "little")  # the local header's method: 99 (AES) zipfile does not implement
    central = data.rfind(b"PK\x01\x02")
    data[central + 10 : central + 12] = (99).to_bytes(2, "little")
    with pytest.raises(CorruptArchiveError, match="NotImplementedError"):
        read_archive("trades", bytes(data), NAME)


def test_archive_whose_directory_points_before_the_file_is_refused_as_corrupt(trades_csv: bytes) -> None:
    data = _zip_with(zipfile.ZIP_DEFLATED, trades_csv)
    end = data.rfind(b"PK\x05\x06")
    data[end + 12 : end + 16] = (len(data) * 4).to_bytes(4, "little")  # directory size beyond the file: bad seek
    with pytest.raises(CorruptArchiveError):
        read_archive("trades", bytes(data), NAME)
