"""Importing card-key files: formats, de-duplication, all-or-nothing errors, nothing in the clear."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from liandong.store.models import CardKey, ImportBatch
from liandong.vault.importer import MAX_KEY_CHARS, KeyImportError, import_keys
from liandong.vault.service import Vault
from sqlalchemy import Engine, func, insert
from sqlmodel import Session, select

from .conftest import add_product


def _stock(session: Session, vault: Vault, product_id: int) -> list[str]:
    rows = session.exec(select(CardKey).where(CardKey.product_id == product_id).order_by(CardKey.id)).all()
    return [vault.decrypt(session, product_id, row.ciphertext) for row in rows]


def _counts(session: Session) -> tuple[int, int]:
    return (
        session.exec(select(func.count()).select_from(CardKey)).one(),
        session.exec(select(func.count()).select_from(ImportBatch)).one(),
    )


def test_txt_import(session: Session, vault: Vault, product_id: int) -> None:
    data = b"  AAAA-1111 \r\n\r\nBBBB-2222\n\t\nCCCC-3333"
    report = import_keys(session, vault, product_id, "keys.txt", data, "txt")
    assert (report.imported, report.duplicates_in_file, report.duplicates_existing) == (3, 0, 0)
    assert _stock(session, vault, product_id) == ["AAAA-1111", "BBBB-2222", "CCCC-3333"]
    batch = session.get(ImportBatch, report.batch_id)
    assert batch is not None
    assert (batch.product_id, batch.source_name, batch.key_count) == (product_id, "keys.txt", 3)
    rows = session.exec(select(CardKey)).all()
    assert {row.batch_id for row in rows} == {report.batch_id}
    assert all(row.order_id is None for row in rows)


def test_csv_import_finds_the_key_column(session: Session, vault: Vault, product_id: int) -> None:
    data = (
        "\ufeffserial,KEY,note\r\n"
        "1, AAAA-1111 ,first\r\n"
        ",,\r\n"
        '2,"BBBB,2222","quoted, with comma"\r\n'
        "\r\n"
        "3,CCCC-3333\r\n"
    ).encode()
    report = import_keys(session, vault, product_id, "keys.csv", data, "csv")
    assert report.imported == 3
    assert _stock(session, vault, product_id) == ["AAAA-1111", "BBBB,2222", "CCCC-3333"]


def test_duplicates_in_file_and_in_stock_are_skipped(session: Session, vault: Vault, product_id: int) -> None:
    first = import_keys(session, vault, product_id, "a.txt", b"A\nB\nA\nA\n", "txt")
    assert (first.imported, first.duplicates_in_file, first.duplicates_existing) == (2, 2, 0)
    second = import_keys(session, vault, product_id, "b.txt", b"B\nC\nC\nD\nA\n", "txt")
    assert (second.imported, second.duplicates_in_file, second.duplicates_existing) == (2, 1, 2)
    assert _stock(session, vault, product_id) == ["A", "B", "C", "D"]
    assert session.get(ImportBatch, second.batch_id).key_count == 2  # type: ignore[union-attr]


def test_only_duplicates_still_records_the_batch(session: Session, vault: Vault, product_id: int) -> None:
    import_keys(session, vault, product_id, "a.txt", b"A\n", "txt")
    report = import_keys(session, vault, product_id, "again.txt", b"A\n", "txt")
    assert (report.imported, report.duplicates_existing) == (0, 1)
    assert _counts(session) == (1, 2)


def test_same_key_in_two_products_is_not_a_duplicate(session: Session, vault: Vault, product_id: int) -> None:
    other = add_product(session, "OTHER")
    import_keys(session, vault, product_id, "a.txt", b"SAME\n", "txt")
    assert import_keys(session, vault, other, "a.txt", b"SAME\n", "txt").imported == 1


def test_a_few_thousand_keys_in_chunks(session: Session, vault: Vault, product_id: int) -> None:
    data = "\n".join(f"KEY-{n:08d}" for n in range(12_000)).encode()
    assert import_keys(session, vault, product_id, "many.txt", data, "txt").imported == 12_000
    assert _counts(session) == (12_000, 1)


BAD_INPUTS = [
    pytest.param("txt", b"GOOD-1\nGOOD-2\nBAD-\xff\n", 3, "not valid UTF-8", id="txt-utf8"),
    pytest.param("txt", b"GOOD-1\nBAD\x00KEY\n", 2, "control character U+0000", id="txt-nul"),
    pytest.param("txt", b"GOOD-1\nGOOD-2\nBAD\tKEY\n", 3, "control character U+0009", id="txt-tab"),
    pytest.param("txt", b"GOOD-1\nBAD\xc2\x85KEY\n", 2, "control character U+0085", id="txt-c1"),
    pytest.param("txt", b"GOOD-1\n" + b"x" * (MAX_KEY_CHARS + 1), 2, "longer than 1024", id="txt-long"),
    pytest.param("txt", b"", None, "no keys", id="txt-empty"),
    pytest.param("txt", b" \r\n\n\t\n", None, "no keys", id="txt-blank"),
    pytest.param("csv", b"id,key\n1,GOOD\n2\n", 3, "missing key cell", id="csv-short-row"),
    pytest.param("csv", b"id,key\n1,GOOD\n2, \n", 3, "missing key cell", id="csv-empty-cell"),
    pytest.param("csv", b"id,code\n1,GOOD\n", 1, "no `key` column", id="csv-no-key-column"),
    pytest.param("csv", b"key,Key\nA,B\n", 1, "more than one `key` column", id="csv-two-key-columns"),
    pytest.param("csv", b'id,key\n1,GOOD\n2,"BAD\nKEY"\n3,GOOD-3\n', 3, "U+000A", id="csv-multiline"),
    pytest.param("csv", b"key\nGOOD\n\xe9\n", 3, "not valid UTF-8", id="csv-utf8"),
    pytest.param("csv", b"", None, "no keys", id="csv-empty"),
    pytest.param("csv", b"id,key\n", None, "no keys", id="csv-header-only"),
]


@pytest.mark.parametrize(("fmt", "data", "line", "reason"), BAD_INPUTS)
def test_bad_input_names_the_line_and_writes_nothing(
    session: Session, vault: Vault, product_id: int, fmt: str, data: bytes, line: int | None, reason: str
) -> None:
    import_keys(session, vault, product_id, "before.txt", b"EXISTING\n", "txt")
    before = _counts(session)
    with pytest.raises(KeyImportError, match=re.escape(reason)) as raised:
        import_keys(session, vault, product_id, "bad", data, fmt)  # type: ignore[arg-type]
    assert raised.value.line == line
    if line is not None:
        assert str(raised.value).startswith(f"line {line}: ")
    assert _counts(session) == before


def test_error_messages_do_not_quote_the_key(session: Session, vault: Vault, product_id: int) -> None:
    with pytest.raises(KeyImportError) as raised:
        import_keys(session, vault, product_id, "bad", b"SECRET\x07KEY\n", "txt")
    assert "SECRET" not in str(raised.value)


def test_unknown_product_writes_nothing(session: Session, vault: Vault) -> None:
    with pytest.raises(KeyImportError, match="unknown product 999"):
        import_keys(session, vault, 999, "keys.txt", b"A\n", "txt")
    assert _counts(session) == (0, 0)


def test_failure_while_writing_rolls_everything_back(
    session: Session, vault: Vault, product_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("liandong.vault.importer.INSERT_CHUNK", 2)
    chunks: list[object] = []

    def failing_insert(table: type[CardKey]) -> object:
        chunks.append(table)
        if len(chunks) == 2:
            raise RuntimeError("disk full")
        return insert(table)

    monkeypatch.setattr("liandong.vault.importer.insert", failing_insert)
    with pytest.raises(RuntimeError, match="disk full"):
        import_keys(session, vault, product_id, "keys.txt", b"A\nB\nC\nD\n", "txt")
    monkeypatch.undo()
    assert _counts(session) == (0, 0)
    # The data key created in the rolled-back transaction is gone with it, and not reused.
    assert import_keys(session, vault, product_id, "keys.txt", b"A\n", "txt").imported == 1
    assert _stock(session, vault, product_id) == ["A"]


def test_plaintext_never_reaches_the_database_files(
    engine: Engine, db_path: Path, vault: Vault, product_id: int
) -> None:
    marker = "ZQXJ-PLAINTEXT-MARKER-7731"
    keys = "\n".join(f"{marker}-{n}" for n in range(50))
    with Session(engine) as session:
        import_keys(session, vault, product_id, "keys.txt", keys.encode(), "txt")
        assert len(_stock(session, vault, product_id)) == 50
    wal = db_path.with_name(db_path.name + "-wal")
    assert wal.exists()
    for path in (db_path, wal):
        content = path.read_bytes()
        assert marker.encode() not in content
        assert marker.encode("utf-16-le") not in content
