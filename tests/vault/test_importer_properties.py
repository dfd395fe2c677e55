"""Generated key files: every file is imported whole or not at all, never in part."""

from __future__ import annotations

import itertools
from typing import Literal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from liandong.store.models import CardKey
from liandong.vault.importer import KeyImportError, import_keys
from liandong.vault.service import Vault
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from tests.vault.conftest import add_product

SKUS = itertools.count()
lines = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=40),  # anything, controls included
        st.from_regex(r"[A-Z0-9]{4}(-[A-Z0-9]{4}){3}", fullmatch=True),  # what real keys look like
        st.just(""),
        st.just("x" * 1100),  # longer than a key may be
    ),
    max_size=30,
)


def stock(session: Session, product_id: int) -> int:
    return session.exec(select(func.count()).where(CardKey.product_id == product_id)).one()


def import_file(engine: Engine, vault: Vault, data: bytes, fmt: Literal["txt", "csv"]) -> int | None:
    """Imports `data` into a new product: the keys imported, or None when the file was refused;
    either way the stock must be exactly what the answer says."""
    with Session(engine) as session:
        product_id = add_product(session, f"P{next(SKUS)}")
    with Session(engine) as session:
        try:
            report = import_keys(session, vault, product_id, "generated", data, fmt)
        except KeyImportError:
            assert stock(session, product_id) == 0  # nothing of a refused file
            return None
        assert stock(session, product_id) == report.imported > 0
        return report.imported + report.duplicates_in_file


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=lines, as_csv=st.booleans())
def test_a_generated_file_is_imported_whole_or_not_at_all(
    engine: Engine, vault: Vault, rows: list[str], as_csv: bool
) -> None:
    text = ("key\n" if as_csv else "") + "\n".join(rows)
    counted = import_file(engine, vault, text.encode("utf-8", "surrogatepass"), "csv" if as_csv else "txt")
    if counted is not None and not as_csv:  # (CSV quoting may join lines: only the stock is checked)
        assert counted == len([row for row in rows if row.strip()])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200), as_csv=st.booleans())
def test_arbitrary_bytes_are_refused_or_imported_whole(
    engine: Engine, vault: Vault, data: bytes, as_csv: bool
) -> None:
    import_file(engine, vault, data, "csv" if as_csv else "txt")
