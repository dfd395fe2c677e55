"""Bulk import of card keys from TXT or CSV files: all of a file or nothing.

The whole file is parsed and validated before the database is touched, and everything is written
in one transaction, so a bad line never leaves half a batch in stock. Errors name the line and the
reason but never the key itself, since messages end up in logs.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from liandong.core.errors import InvalidError
from liandong.store.models import CardKey, ImportBatch, Product
from liandong.vault.service import Vault
from liandong.vault.tables import CARD_KEYS, DATA_KEYS

MAX_KEY_CHARS = 1024
INSERT_CHUNK = 5000
"""Rows per executemany: large enough to amortise round trips, small enough to bound memory."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
"""C0/C1 control characters and Unicode line breaks: invisible or line-splitting, so never in a
key a buyer is meant to type or paste."""


class KeyImportError(InvalidError):
    """A file that cannot be imported; nothing of it was written."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.reason = reason
        self.line = line


@dataclass(frozen=True)
class ImportReport:
    batch_id: int
    imported: int
    duplicates_in_file: int
    duplicates_existing: int


def _decode(data: bytes) -> str:
    try:
        # utf-8-sig: spreadsheet programs often start UTF-8 files with a byte-order mark.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise KeyImportError("not valid UTF-8", data.count(b"\n", 0, error.start) + 1) from error


def _check_key(key: str, line: int) -> str:
    if len(key) > MAX_KEY_CHARS:
        raise KeyImportError(f"key longer than {MAX_KEY_CHARS} characters ({len(key)})", line)
    control = _CONTROL.search(key)
    if control is not None:
        raise KeyImportError(f"control character U+{ord(control.group()):04X} in key", line)
    return key


def _txt_keys(text: str) -> Iterator[str]:
    for number, raw in enumerate(text.split("\n"), start=1):
        key = raw.strip()
        if key:
            yield _check_key(key, number)


def _csv_keys(text: str) -> Iterator[str]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            return
        columns = [index for index, name in enumerate(header) if name.strip().lower() == "key"]
        if len(columns) != 1:
            reason = "no `key` column in the header" if not columns else "more than one `key` column"
            raise KeyImportError(reason, 1)
        column = columns[0]
        start = reader.line_num + 1
        for row in reader:
            # A record may span lines (quoted newlines): name the line where it starts.
            number, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank rows, including the `,,,` ones spreadsheets write
            key = row[column].strip() if column < len(row) else ""
            if not key:
                raise KeyImportError("missing key cell", number)
            yield _check_key(key, number)
    except csv.Error as error:
        raise KeyImportError(f"malformed CSV ({error})", reader.line_num) from error


ImportProgress = Callable[[str, int, int], None]
"""Hears (stage, done, total) while a large file is imported: "encrypting", then "storing"."""

PROGRESS_STEP = 2000
ROTATION_RETRIES = 3
"""Imports encrypted under a data key that a rotation replaced meanwhile are encrypted again."""


class _KeyRotatedError(Exception):
    """The product's data key moved to a new generation between encrypting and storing."""


def import_keys(
    session: Session,
    vault: Vault,
    product_id: int,
    source_name: str,
    data: bytes,
    fmt: Literal["txt", "csv"],
    progress: ImportProgress | None = None,
) -> ImportReport:
    """Adds the file's keys to the product's stock and commits, skipping (and counting) keys
    repeated in the file or already in stock. Owns the session's transactions: rolls back and
    raises `KeyImportError` if anything is wrong, so call it with no other work pending.

    The keys are encrypted between transactions, so a large file never holds SQLite's write lock
    (and with it every delivery) for the seconds encryption takes; a key imported meanwhile by
    someone else trips the unique fingerprint and fails the whole import, never half of it.

    During a rotation the keys are checked against the fingerprints of every data key generation
    still in use, and the storing transaction checks (`FOR SHARE` on PostgreSQL) that the data key
    they were encrypted with is still the product's current one: if a rotation moved on, the file
    is encrypted again, so no card key is ever stored under a generation the rotation retired.
    """
    for _attempt in range(ROTATION_RETRIES):
        try:
            return _import_once(session, vault, product_id, source_name, data, fmt, progress)
        except _KeyRotatedError:
            continue
    raise KeyImportError("the vault is being rotated and the keys moved again; import the file again")


def _import_once(
    session: Session,
    vault: Vault,
    product_id: int,
    source_name: str,
    data: bytes,
    fmt: Literal["txt", "csv"],
    progress: ImportProgress | None,
) -> ImportReport:
    report = progress or (lambda _stage, _done, _total: None)
    try:
        text = _decode(data)
        keys = list(_txt_keys(text) if fmt == "txt" else _csv_keys(text))
        if not keys:
            raise KeyImportError("no keys in the file")
        if session.get(Product, product_id) is None:
            raise KeyImportError(f"unknown product {product_id}")
        live = vault.live_keys(session, product_id)
        product_key = live[0]
        existing = set(session.exec(select(CardKey.fingerprint).where(CardKey.product_id == product_id)))
        session.commit()
        seen: set[str] = set()
        rows: list[dict[str, Any]] = []
        duplicates_in_file = duplicates_existing = 0
        for done, key in enumerate(keys):
            if done % PROGRESS_STEP == 0:
                report("encrypting", done, len(keys))
            fingerprint = product_key.fingerprint(key)
            if fingerprint in existing or any(old.fingerprint(key) in existing for old in live[1:]):
                duplicates_existing += 1
            elif fingerprint in seen:
                duplicates_in_file += 1
            else:
                seen.add(fingerprint)
                rows.append({"ciphertext": product_key.encrypt(key), "fingerprint": fingerprint})
        report("storing", 0, len(rows))
        generation = (
            session.connection()
            .execute(
                select(DATA_KEYS.c.generation)
                .where(DATA_KEYS.c.product_id == product_id)
                .with_for_update(read=True)  # a rotation's next generation waits for this commit
            )
            .scalar()
        )
        if generation is not None and generation != product_key.generation:
            raise _KeyRotatedError
        batch = ImportBatch(product_id=product_id, source_name=source_name[:255], key_count=len(rows))
        session.add(batch)
        session.flush()
        assert batch.id is not None
        for row in rows:
            row["product_id"] = product_id
            row["batch_id"] = batch.id
            row["key_generation"] = product_key.generation
        # Core executemany on the session's connection (same transaction): the ORM bulk path would
        # spend more time building rows than SQLite spends storing them.
        connection = session.connection()
        for start in range(0, len(rows), INSERT_CHUNK):
            connection.execute(insert(CARD_KEYS), rows[start : start + INSERT_CHUNK])
            report("storing", min(start + INSERT_CHUNK, len(rows)), len(rows))
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise KeyImportError(
            "the database refused the keys (another import of this product at the same time?); "
            "nothing was imported, try again"
        ) from error
    except BaseException:
        session.rollback()
        raise
    return ImportReport(batch.id, len(rows), duplicates_in_file, duplicates_existing)
