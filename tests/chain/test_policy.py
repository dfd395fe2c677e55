"""The confirmation policy: which one a chain gets (`policy_for`'s precedence, its refusals), what
it asks of an order's payment by the order's size, for block counts and block tags, and how the
indexer's store applies a tag (only a tagged block on the branch it followed confirms)."""

from __future__ import annotations

import os

import pytest
from liandong.chain.indexer import ConfirmationPolicy as ReExported
from liandong.chain.indexer import Header, IndexerStore
from liandong.chain.policy import ConfirmationPolicy, Requirement, policy_for
from liandong.chain.quotes import NATIVE_COIN
from liandong.core.config import Settings
from liandong.core.errors import InvalidError
from liandong.events import OrderEvent
from liandong.store.models import OrderStatus, Payment, Product, ShopOrder
from sqlalchemy import Engine
from sqlmodel import Session, select

TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
UNKNOWN_CHAIN = 999_999_999
CHAIN = 1


def _settings(confirmations: int | str | None = None, **more: object) -> Settings:
    return Settings(confirmations=confirmations, _env_file=None, **more)  # type: ignore[arg-type]


def test_the_indexer_re_exports_the_policy() -> None:
    assert ReExported is ConfirmationPolicy


def test_unset_the_chain_profile_decides() -> None:
    assert policy_for(_settings(), 1).confirmations == 12  # Ethereum
    assert policy_for(_settings(), 137).confirmations == "finalized"  # Polygon PoS
    assert policy_for(_settings(), 31337).confirmations == 0  # local chain A: the demo delivers at once
    assert policy_for(_settings(), 31339).confirmations == 2  # local chain B


def test_the_merchant_setting_beats_the_profile_and_the_override_beats_both() -> None:
    assert policy_for(_settings(5), 1).confirmations == 5
    assert policy_for(_settings("safe"), 1).confirmations == "safe"
    assert policy_for(_settings(0), 137).confirmations == 0  # 0 is a setting, not "unset"
    assert policy_for(_settings(5), 1, overrides="finalized").confirmations == "finalized"
    assert policy_for(_settings(), 137, overrides=0).confirmations == 0
    assert policy_for(_settings(), 1, overrides="7").confirmations == 7  # a count spelled as text


def test_a_chain_without_profile_needs_a_setting() -> None:
    with pytest.raises(InvalidError, match="LIANDONG_CONFIRMATIONS"):
        policy_for(_settings(), UNKNOWN_CHAIN)
    assert policy_for(_settings(4), UNKNOWN_CHAIN).confirmations == 4
    assert policy_for(_settings(), UNKNOWN_CHAIN, overrides="safe").confirmations == "safe"


@pytest.mark.parametrize("bad", ["latest", "pending", "", "-1", -1, True])
def test_neither_a_count_nor_a_tag_is_refused(bad: int | str) -> None:
    with pytest.raises(InvalidError):
        policy_for(_settings(), 1, overrides=bad)
    with pytest.raises(InvalidError):
        ConfirmationPolicy(bad)  # type: ignore[arg-type]


def test_the_setting_reads_counts_and_tags_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIANDONG_CONFIRMATIONS", "finalized")
    assert Settings(_env_file=None).confirmations == "finalized"
    monkeypatch.setenv("LIANDONG_CONFIRMATIONS", "3")
    assert Settings(_env_file=None).confirmations == 3
    monkeypatch.delenv("LIANDONG_CONFIRMATIONS")
    assert Settings(_env_file=None).confirmations is None


def test_the_large_order_rule_comes_from_the_settings() -> None:
    settings = _settings(large_order_confirmations=6, large_order_thresholds={TOKEN: 1_000})
    policy = policy_for(settings, 1)
    assert policy.required(TOKEN.lower(), 999) == Requirement(12)
    assert policy.required(TOKEN, 1_000) == Requirement(12)  # the profile's 12 is already stricter
    assert policy_for(settings, 31339).required(TOKEN.upper(), 5_000) == Requirement(6)


def test_block_counts_by_order_size() -> None:
    policy = ConfirmationPolicy(1, 4, {TOKEN: 100})
    assert policy.tag is None
    small, large = policy.required(TOKEN, 99), policy.required(TOKEN, 100)
    assert (small, large) == (Requirement(1), Requirement(4))
    assert not small.met(0, 10, None)
    assert small.met(1, 10, None)
    assert ConfirmationPolicy(0).required(TOKEN, 1).immediate


def test_under_a_tag_large_orders_need_the_tag_and_their_blocks() -> None:
    policy = ConfirmationPolicy("safe", 3, {TOKEN: 100})
    assert policy.tag == "safe"
    small, large = policy.required(TOKEN, 1), policy.required(TOKEN, 100)
    assert (small, large) == (Requirement(0, "safe"), Requirement(3, "safe"))
    assert not small.immediate
    # a payment in block 10: under the tag once the tagged block is 10 or more
    assert not small.met(depth=5, block_number=10, tagged=None)  # the tag is not known
    assert not small.met(depth=5, block_number=10, tagged=9)
    assert small.met(depth=0, block_number=10, tagged=10)
    assert not large.met(depth=2, block_number=10, tagged=12)  # under the tag, one block short
    assert large.met(depth=3, block_number=10, tagged=12)


def _header(number: int, branch: str = "a") -> Header:
    return Header(number, f"0x{branch}{number:03}", f"0x{branch}{number - 1:03}", 1_000 + number)


def _paid_order(engine: Engine, block: Header) -> str:
    """A paid order whose payment is in `block`, waiting for its confirmation."""
    key = "0x" + os.urandom(32).hex()
    with Session(engine) as session:
        product = Product(sku="tagged", name="tagged")
        session.add(product)
        session.commit()
        assert product.id is not None
        session.add(
            ShopOrder(
                chain_order_id=key,
                chain_id=CHAIN,
                product_id=product.id,
                quantity=1,
                token=NATIVE_COIN,
                amount="1000",
                payer="0x" + "11" * 20,
                status=OrderStatus.PAID,
                quote_signature="0x",
                quote_expiry=0,
                delivery_deadline=2**40,
                access_token_hash="",
            )
        )
        session.add(
            Payment(
                chain_id=CHAIN,
                chain_order_id=key,
                payer="0x" + "11" * 20,
                token=NATIVE_COIN,
                amount="1000",
                tx_hash="0x" + "22" * 32,
                block_number=block.number,
                block_hash=block.hash,
                log_index=0,
            )
        )
        session.commit()
    return key


def _status(engine: Engine, key: str) -> OrderStatus:
    with Session(engine) as session:
        return OrderStatus(
            session.exec(select(ShopOrder.status).where(ShopOrder.chain_order_id == key)).one()
        )


def test_the_store_confirms_under_the_tagged_block_only_if_it_is_the_one_it_followed(engine: Engine) -> None:
    events: list[OrderEvent] = []
    store = IndexerStore(engine, CHAIN, ConfirmationPolicy("safe"), 64, events.append)
    store.start_at(_header(10))
    store.apply([], [_header(11), _header(12)], 10, _header(12), 12)
    key = _paid_order(engine, _header(12))
    store = IndexerStore(engine, CHAIN, ConfirmationPolicy("safe"), 64, events.append)  # it reads it

    assert store.apply([], [_header(13)], 12, _header(13), 13, _header(11)) == []  # safe below it
    assert (events[-1].status, events[-1].awaiting, events[-1].blocks_left) == ("paid", "safe", 1)
    assert store.apply([], [_header(14)], 13, _header(14), 14, None) == []  # the tag not known
    # a provider's safe block 12 on another branch than the one this store followed: not yet
    assert store.apply([], [_header(15)], 14, _header(15), 15, _header(12, "b")) == []
    assert _status(engine, key) == OrderStatus.PAID
    # the tag above what this transaction reaches proves nothing about it either
    assert store.apply([], [_header(16)], 15, _header(16), 16, _header(17)) == []

    assert len(store.apply([], [_header(17)], 16, _header(17), 17, _header(12))) == 1  # handed on
    assert _status(engine, key) == OrderStatus.CONFIRMED
    assert (events[-1].status, events[-1].awaiting, events[-1].blocks_left) == ("confirmed", "safe", 0)
    assert store.apply([], [_header(18)], 17, _header(18), 18, _header(13)) == []  # confirmed once
