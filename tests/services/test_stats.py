"""The dashboard's figures over seeded orders, on SQLite and on PostgreSQL (the machine's server, a
database of this module's own, emptied before each test and dropped afterwards)."""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from liandong.services.stats import (
    AbnormalReason,
    HistogramBucket,
    WindowError,
    abnormal_deliveries,
    backlog,
    efficiency,
    percentile,
    resolve_window,
    sales,
    stock_levels,
    template_results,
)
from liandong.store.db import make_engine, migrate
from liandong.store.models import (
    CardKey,
    DeliveryAttempt,
    ImportBatch,
    KeyAccess,
    MessageTemplate,
    OrderStatus,
    Product,
    ShopOrder,
)
from sqlalchemy import Engine, text
from sqlmodel import Session, SQLModel

from tests.conftest import postgres_database

NATIVE = "0x0000000000000000000000000000000000000000"
USDC = "0x" + "a" * 40
T0 = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
CHAIN_A, CHAIN_B = 31337, 31339  # "Local chain A" and "Local chain B" in the chain profiles


@pytest.fixture(scope="module")
def stats_postgres_url() -> Iterator[str]:
    """One migrated database for the module, emptied before each test (migrating is slow)."""
    with postgres_database() as url:
        migrate(url)
        yield url


def _empty_postgres(engine: Engine) -> None:
    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        path = tmp_path / "shop.db"
        shutil.copyfile(request.getfixturevalue("migrated_template"), path)
        engine = make_engine(f"sqlite:///{path}")
    else:
        engine = make_engine(request.getfixturevalue("stats_postgres_url"))
        _empty_postgres(engine)
    yield engine
    engine.dispose()


# ------------------------------------------------------------------ seeding


def add_product(session: Session, sku: str, low_stock_percent: int = 20) -> int:
    product = Product(sku=sku, name=f"Product {sku}", low_stock_percent=low_stock_percent)
    session.add(product)
    session.flush()
    assert product.id is not None
    return product.id


def add_order(
    session: Session,
    product_id: int,
    *,
    status: OrderStatus = OrderStatus.DELIVERED,
    token: str = NATIVE,
    amount: int = 1,
    quantity: int = 1,
    block_time: datetime | None = None,
    seen_at: datetime | None = None,
    delivered_at: datetime | None = None,
    refund_reason: str | None = None,
    chain_id: int = CHAIN_A,
) -> ShopOrder:
    order = ShopOrder(
        chain_order_id="0x" + secrets.token_hex(32),
        chain_id=chain_id,
        product_id=product_id,
        quantity=quantity,
        token=token,
        amount=str(amount),
        status=status,
        quote_signature="",
        quote_expiry=0,
        delivery_deadline=0,
        access_token_hash="",
        block_time=block_time,
        seen_at=seen_at,
        delivered_at=delivered_at,
        refund_reason=refund_reason,
    )
    session.add(order)
    session.flush()
    assert order.id is not None
    return order


def delivered(
    session: Session, product_id: int, paid: datetime, latency: float, chain_id: int = CHAIN_A
) -> ShopOrder:
    """A delivered order whose payment's block was at `paid`, delivered `latency` seconds later."""
    return add_order(
        session,
        product_id,
        chain_id=chain_id,
        block_time=paid,
        seen_at=paid + timedelta(seconds=0.25),
        delivered_at=paid + timedelta(seconds=latency),
    )


def add_keys(session: Session, product_id: int, count: int, sold_to: list[int] | None = None) -> None:
    """One import batch of `count` keys; the first ones go to the orders in `sold_to`, one each."""
    batch = ImportBatch(product_id=product_id, source_name="keys.txt", key_count=count)
    session.add(batch)
    session.flush()
    assert batch.id is not None
    owners = sold_to or []
    for index in range(count):
        session.add(
            CardKey(
                product_id=product_id,
                batch_id=batch.id,
                ciphertext=b"sealed",
                fingerprint=secrets.token_hex(32),
                order_id=owners[index] if index < len(owners) else None,
            )
        )
    session.flush()


def add_attempt(
    session: Session,
    order: ShopOrder,
    channel: str,
    at: datetime,
    *,
    variant: str | None = None,
    succeeded: bool = True,
    error: str | None = None,
) -> None:
    assert order.id is not None
    session.add(
        DeliveryAttempt(
            order_id=order.id,
            channel=channel,
            variant=variant,
            succeeded=succeeded,
            error=error,
            started_at=at,
            finished_at=at + timedelta(seconds=0.1),
        )
    )
    session.flush()


def add_reads(session: Session, order: ShopOrder, count: int) -> None:
    assert order.id is not None
    for _ in range(count):
        session.add(KeyAccess(order_id=order.id, via="token"))
    session.flush()


# ------------------------------------------------------------------ window


def test_the_default_window_is_the_last_24_hours() -> None:
    start, end = resolve_window(until=T0)
    assert (start, end) == (T0 - timedelta(hours=24), T0)
    start, end = resolve_window()
    assert end - start == timedelta(hours=24)
    assert abs(datetime.now(UTC) - end) < timedelta(minutes=1)


def test_naive_bounds_are_taken_as_utc_and_empty_or_huge_windows_refused() -> None:
    assert resolve_window(T0.replace(tzinfo=None), (T0 + HOUR).replace(tzinfo=None)) == (T0, T0 + HOUR)
    with pytest.raises(WindowError):
        resolve_window(T0, T0)
    with pytest.raises(WindowError):
        resolve_window(T0 + HOUR, T0)
    assert resolve_window(T0 - timedelta(days=366), T0) == (T0 - timedelta(days=366), T0)
    with pytest.raises(WindowError, match="366 days"):
        resolve_window(T0 - timedelta(days=366, seconds=1), T0)


# ------------------------------------------------------------------ efficiency

LATENCIES = [
    0.3,
    0.5,
    0.8,
    1.0,
    1.5,
    2.0,
    4.0,
    5.0,
    7.0,
    9.0,
    10.0,
    10.5,
    15.0,
    30.0,
    45.0,
    60.0,
    61.0,
    90.0,
    120.0,
]
"""Plus one order delivered 0.3 s *before* its block's timestamp (clock skew), which counts as 0."""


def test_percentiles_are_nearest_rank() -> None:
    values = sorted([0.0, *LATENCIES])
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [7.0, 90.0, 120.0, 120.0]
    assert percentile([3.0], 50) == 3.0
    assert percentile(list(range(1, 101)), 95) == 95
    assert percentile(list(range(1, 101)), 1) == 1


def test_efficiency_of_a_known_list_of_latencies(session: Session) -> None:
    product = add_product(session, "GAME")
    paid = T0 + timedelta(minutes=1)
    for latency in LATENCIES:
        delivered(session, product, paid, latency)
    add_order(
        session,
        product,
        block_time=paid,
        seen_at=paid - timedelta(seconds=1),
        delivered_at=paid - timedelta(seconds=0.3),
    )
    delivered(session, product, T0 - timedelta(minutes=5), 60.0)  # delivered before the window
    delivered(session, product, T0 + HOUR - timedelta(seconds=3), 3.0)  # delivered at `until`: excluded
    add_order(session, product, status=OrderStatus.CONFIRMED, block_time=paid, seen_at=paid)
    session.commit()

    board = efficiency(session, T0, T0 + HOUR, threshold_seconds=10.0)

    paid_part = board.payment_to_delivery
    assert (paid_part.count, paid_part.p50, paid_part.p95, paid_part.p99, paid_part.max) == (
        20,
        7.0,
        90.0,
        120.0,
        120.0,
    )
    node = board.seen_to_delivery
    assert (node.count, node.p50, node.p95, node.p99, node.max) == (20, 6.75, 89.75, 119.75, 119.75)
    assert board.within_threshold == 12
    assert board.share_within == pytest.approx(0.6)
    assert board.alert
    assert board.histogram == [
        HistogramBucket(low=0.0, high=0.5, count=3),
        HistogramBucket(low=0.5, high=1.0, count=2),
        HistogramBucket(low=1.0, high=2.0, count=2),
        HistogramBucket(low=2.0, high=5.0, count=2),
        HistogramBucket(low=5.0, high=10.0, count=3),
        HistogramBucket(low=10.0, high=30.0, count=3),
        HistogramBucket(low=30.0, high=60.0, count=2),
        HistogramBucket(low=60.0, high=None, count=3),
    ]
    assert (board.since, board.until, board.threshold_seconds, board.target_share) == (
        T0,
        T0 + HOUR,
        10.0,
        0.99,
    )


def test_deliveries_stamped_before_their_block_count_as_instant(session: Session) -> None:
    product = add_product(session, "GAME")
    add_order(session, product, block_time=T0, seen_at=T0, delivered_at=T0 - timedelta(seconds=0.3))
    session.commit()
    board = efficiency(session, T0 - HOUR, T0 + HOUR)
    assert (board.payment_to_delivery.p50, board.payment_to_delivery.max) == (0.0, 0.0)
    assert (board.seen_to_delivery.p50, board.within_threshold) == (0.0, 1)


@pytest.mark.parametrize(("slow", "alert"), [(0, False), (1, False), (2, True)])
def test_the_alert_fires_under_99_percent_within_the_threshold(
    session: Session, slow: int, alert: bool
) -> None:
    product = add_product(session, "GAME")
    for index in range(100):
        delivered(session, product, T0 + timedelta(seconds=index), 10.5 if index < slow else 1.0)
    session.commit()
    board = efficiency(session, T0, T0 + HOUR, threshold_seconds=10.0)
    assert board.within_threshold == 100 - slow
    assert board.share_within == pytest.approx((100 - slow) / 100)
    assert board.alert is alert


def test_efficiency_without_deliveries_has_no_figures_and_no_alert(session: Session) -> None:
    board = efficiency(session, T0, T0 + HOUR)
    assert board.payment_to_delivery.count == 0
    assert board.payment_to_delivery.p50 is None
    assert board.share_within is None
    assert not board.alert
    assert [bucket.count for bucket in board.histogram] == [0] * 8


# ------------------------------------------------------------------ sales


def test_sales_by_hour_product_and_token_beyond_64_bits(session: Session) -> None:
    game, gift = add_product(session, "GAME"), add_product(session, "GIFT")
    big = 2**70
    add_order(session, game, amount=big, block_time=T0 + timedelta(minutes=15))
    add_order(session, game, amount=big + 5, quantity=2, block_time=T0 + timedelta(minutes=59, seconds=59))
    add_order(
        session,
        game,
        status=OrderStatus.REFUNDING,
        amount=100,
        seen_at=T0 + timedelta(hours=1, minutes=10),
        refund_reason="payment for an order this shop has no record of",
    )
    add_order(
        session, gift, status=OrderStatus.REFUNDED, token=USDC, amount=3_000_000, block_time=T0 + 2 * HOUR
    )
    add_order(
        session, gift, status=OrderStatus.PAID, amount=7, quantity=3, block_time=T0 + timedelta(hours=2.5)
    )
    add_order(session, game, status=OrderStatus.QUOTED, amount=big)  # quoted now: never paid
    add_order(session, game, amount=big, block_time=T0 + 3 * HOUR)  # at `until`
    add_order(session, game, amount=big, block_time=T0 - timedelta(seconds=1))  # before `since`
    session.commit()

    report = sales(session, T0, T0 + 3 * HOUR)

    assert (report.orders, report.units) == (5, 8)
    assert [(row.hour, row.orders, row.revenue) for row in report.by_hour] == [
        (T0, 2, {NATIVE: str(2 * big + 5)}),
        (T0 + HOUR, 1, {NATIVE: "100"}),
        (T0 + 2 * HOUR, 2, {NATIVE: "7", USDC: "3000000"}),
    ]
    assert [(row.product_id, row.sku, row.orders, row.units, row.revenue) for row in report.by_product] == [
        (game, "GAME", 3, 4, {NATIVE: str(2 * big + 105)}),
        (gift, "GIFT", 2, 4, {NATIVE: "7", USDC: "3000000"}),
    ]
    assert [(row.token, row.orders, row.revenue, row.refunded) for row in report.by_token] == [
        (NATIVE, 4, str(2 * big + 112), "100"),
        (USDC, 1, "3000000", "3000000"),
    ]
    assert int(report.by_token[0].revenue) > 2**64


def test_every_hour_of_the_window_has_a_bucket(session: Session) -> None:
    report = sales(session, T0 + timedelta(minutes=30), T0 + timedelta(hours=2, minutes=15))
    assert [(row.hour, row.orders, row.revenue) for row in report.by_hour] == [
        (T0, 0, {}),
        (T0 + HOUR, 0, {}),
        (T0 + 2 * HOUR, 0, {}),
    ]
    assert (report.orders, report.by_product, report.by_token) == (0, [], [])


def test_two_chains_are_broken_down_by_network_with_revenue_per_chain_and_token(session: Session) -> None:
    game = add_product(session, "GAME")
    add_order(session, game, amount=5, block_time=T0)  # the native coin of chain A
    add_order(session, game, amount=7, quantity=2, block_time=T0, chain_id=CHAIN_B)  # of chain B: also 0x0
    add_order(session, game, token=USDC, amount=9, block_time=T0, chain_id=CHAIN_B)
    add_order(session, game, status=OrderStatus.REFUNDING, amount=2, block_time=T0, chain_id=CHAIN_B)
    add_order(session, game, status=OrderStatus.CONFIRMED, amount=1, block_time=T0, chain_id=CHAIN_B)
    delivered(session, game, T0, 1.0)
    delivered(session, game, T0, 12.0, chain_id=CHAIN_B)
    session.commit()

    report = sales(session, T0, T0 + HOUR)
    assert (report.orders, report.units) == (7, 8)  # the totals cover both chains
    by_token = [(row.network, row.token, row.orders, row.revenue, row.refunded) for row in report.by_token]
    assert by_token == [
        ("Local chain A", NATIVE, 2, "6", "0"),
        ("Local chain B", NATIVE, 4, "11", "2"),
        ("Local chain B", USDC, 1, "9", "0"),
    ]
    assert [(row.network, row.orders, row.units) for row in report.by_chain] == [
        ("Local chain A", 2, 2),
        ("Local chain B", 5, 6),
    ]
    [hour] = report.by_hour
    assert hour.orders_by_chain == {CHAIN_A: 2, CHAIN_B: 5}
    assert hour.revenue_by_chain == {CHAIN_A: {NATIVE: "6"}, CHAIN_B: {NATIVE: "11", USDC: "9"}}

    board = efficiency(session, T0, T0 + HOUR, threshold_seconds=10.0)
    assert board.payment_to_delivery.count == 2
    chains = {chain.network: chain for chain in board.by_chain}
    assert list(chains) == ["Local chain A", "Local chain B"]
    assert (chains["Local chain A"].payment_to_delivery.p50, chains["Local chain A"].alert) == (1.0, False)
    assert (chains["Local chain B"].payment_to_delivery.p50, chains["Local chain B"].alert) == (12.0, True)
    assert (
        chains["Local chain B"].backlog.awaiting_keys,
        chains["Local chain B"].backlog.refunds_to_send,
    ) == (1, 1)

    owed = backlog(session)
    assert (owed.awaiting_confirmations, owed.awaiting_keys, owed.deliveries_to_record) == (0, 1, 5)
    assert [(chain.network, chain.deliveries_to_record) for chain in owed.by_chain] == [
        ("Local chain A", 2),
        ("Local chain B", 3),
    ]
    assert backlog(session, CHAIN_A).by_chain[0].awaiting_keys == 0

    log = abnormal_deliveries(session, T0, T0 + HOUR, threshold_seconds=10.0)
    assert [(entry.network, entry.reasons) for entry in log.entries] == [
        ("Local chain B", [AbnormalReason.SLOW]),
        ("Local chain B", [AbnormalReason.REFUND]),
    ]


# ------------------------------------------------------------------ abnormal deliveries


def test_the_abnormal_delivery_log(session: Session) -> None:
    product = add_product(session, "GAME")
    minute = timedelta(minutes=1)
    fine = delivered(session, product, T0 + 1 * minute, 1.0)
    add_attempt(session, fine, "email", T0 + 1 * minute)
    slow = delivered(session, product, T0 + 2 * minute, 12.0)
    add_attempt(session, slow, "email", T0 + 2 * minute)
    failing = delivered(session, product, T0 + 3 * minute, 2.0)
    add_attempt(session, failing, "email", T0 + 3 * minute, succeeded=False, error="smtp timeout")
    add_attempt(
        session, failing, "sms", T0 + 3 * minute + timedelta(seconds=1), succeeded=False, error="gateway 500"
    )
    add_attempt(session, failing, "webhook", T0 + 3 * minute + timedelta(seconds=2))
    resent = delivered(session, product, T0 + 4 * minute, 1.0)
    add_attempt(session, resent, "email", T0 + 4 * minute)
    add_attempt(session, resent, "email", T0 + 30 * minute)
    refunded = add_order(
        session,
        product,
        status=OrderStatus.REFUNDING,
        block_time=T0 + 5 * minute,
        seen_at=T0 + 5 * minute,
        refund_reason="out of stock",
    )
    on_the_limit = delivered(session, product, T0 + 6 * minute, 10.0)
    add_attempt(session, on_the_limit, "email", T0 + 6 * minute)
    delivered(session, product, T0 - minute, 50.0)  # slow, but paid before the window
    session.commit()

    log = abnormal_deliveries(session, T0, T0 + HOUR, threshold_seconds=10.0)

    assert log.total == 4
    assert [entry.order for entry in log.entries] == [
        refunded.chain_order_id,
        resent.chain_order_id,
        failing.chain_order_id,
        slow.chain_order_id,
    ]
    by_order = {entry.order: entry for entry in log.entries}

    entry = by_order[refunded.chain_order_id]
    assert (entry.reasons, entry.refund_reason, entry.status) == (
        [AbnormalReason.REFUND],
        "out of stock",
        OrderStatus.REFUNDING,
    )
    assert (entry.delivered_at, entry.latency_seconds, entry.attempts.total) == (None, None, 0)

    entry = by_order[resent.chain_order_id]
    assert entry.reasons == [AbnormalReason.RETRIED]
    assert (entry.attempts.total, entry.attempts.failed, entry.attempts.channels) == (2, 0, ["email"])

    entry = by_order[failing.chain_order_id]
    assert entry.reasons == [AbnormalReason.FAILED_ATTEMPT, AbnormalReason.RETRIED]
    attempts = entry.attempts
    assert (attempts.total, attempts.failed, attempts.channels, attempts.last_error) == (
        3,
        2,
        ["email", "sms", "webhook"],
        "gateway 500",
    )

    entry = by_order[slow.chain_order_id]
    assert entry.reasons == [AbnormalReason.SLOW]
    assert entry.latency_seconds == 12.0
    assert (entry.paid_at, entry.delivered_at) == (T0 + 2 * minute, T0 + 2 * minute + timedelta(seconds=12))
    assert entry.attempts.last_error is None


def test_the_abnormal_log_shows_the_newest_up_to_its_limit(session: Session) -> None:
    product = add_product(session, "GAME")
    orders = [delivered(session, product, T0 + timedelta(minutes=index), 30.0) for index in range(5)]
    session.commit()
    log = abnormal_deliveries(session, T0, T0 + HOUR, threshold_seconds=10.0, limit=2)
    assert log.total == 5
    assert [entry.order for entry in log.entries] == [orders[4].chain_order_id, orders[3].chain_order_id]
    with pytest.raises(ValueError, match="limit"):
        abnormal_deliveries(session, T0, T0 + HOUR, limit=0)


# ------------------------------------------------------------------ stock


def test_stock_levels_and_low_stock_flags(session: Session) -> None:
    def sold(product_id: int, count: int) -> list[int]:
        ids = [add_order(session, product_id).id for _ in range(count)]
        return [order_id for order_id in ids if order_id is not None]

    healthy = add_product(session, "HEALTHY")
    add_keys(session, healthy, 10, sold(healthy, 3))
    low = add_product(session, "LOW")
    add_keys(session, low, 6, sold(low, 6))
    add_keys(session, low, 4, sold(low, 3))
    gone = add_product(session, "GONE")
    add_keys(session, gone, 5, sold(gone, 5))
    never = add_product(session, "NEVER")
    boundary = add_product(session, "HALF", low_stock_percent=50)
    add_keys(session, boundary, 10, sold(boundary, 5))
    under = add_product(session, "UNDER", low_stock_percent=50)
    add_keys(session, under, 10, sold(under, 6))
    session.commit()

    levels = stock_levels(session)

    assert [
        (level.product_id, level.available, level.sold, level.total, level.low, level.sold_out)
        for level in levels
    ] == [
        (healthy, 7, 3, 10, False, False),
        (low, 1, 9, 10, True, False),
        (gone, 0, 5, 5, True, True),
        (never, 0, 0, 0, False, True),
        (boundary, 5, 5, 10, False, False),
        (under, 4, 6, 10, True, False),
    ]
    assert (levels[0].sku, levels[0].name, levels[4].low_stock_percent) == ("HEALTHY", "Product HEALTHY", 50)


# ------------------------------------------------------------------ A/B results


def test_template_results_per_channel_and_variant(session: Session) -> None:
    product = add_product(session, "GAME")
    for channel, variant in [("email", "A"), ("email", "B"), ("sms", "A"), ("email", "C")]:
        session.add(MessageTemplate(channel=channel, variant=variant, body="Your keys: {link}"))
    at = T0 + timedelta(minutes=10)
    orders = [add_order(session, product, block_time=at) for _ in range(10)]

    # email A: six sends, five through (order 0 twice), one failure; buyers 0 and 2 came back.
    for index in (0, 0, 1, 2, 3):
        add_attempt(session, orders[index], "email", at, variant="A")
    add_attempt(session, orders[4], "email", at, variant="A", succeeded=False, error="bounced")
    for order, reads in zip(orders[:4], (2, 1, 3, 0), strict=True):
        add_reads(session, order, reads)
    # email B: three sends, two through; both buyers came back.
    add_attempt(session, orders[5], "email", at, variant="B")
    add_attempt(session, orders[6], "email", at, variant="B")
    add_attempt(session, orders[7], "email", at, variant="B", succeeded=False, error="bounced")
    add_reads(session, orders[5], 2)
    add_reads(session, orders[6], 4)
    # sms A: one send, one read only.
    add_attempt(session, orders[8], "sms", at, variant="A")
    add_reads(session, orders[8], 1)
    # Not counted: a channel without templates, and a send before the window.
    add_attempt(session, orders[8], "webhook", at)
    add_attempt(session, orders[9], "email", T0 - timedelta(seconds=1), variant="A")
    add_reads(session, orders[9], 5)
    session.commit()

    results = template_results(session, T0, T0 + HOUR).results

    assert [
        (r.channel, r.variant, r.sent, r.succeeded, r.orders, r.came_back, r.success_rate, r.come_back_rate)
        for r in results
    ] == [
        ("email", "A", 6, 5, 4, 2, pytest.approx(5 / 6), 0.5),
        ("email", "B", 3, 2, 2, 2, pytest.approx(2 / 3), 1.0),
        ("email", "C", 0, 0, 0, 0, None, None),
        ("sms", "A", 1, 1, 1, 0, 1.0, 0.0),
    ]


def test_variants_sent_without_a_stored_template_are_still_reported(session: Session) -> None:
    product = add_product(session, "GAME")
    order = add_order(session, product, block_time=T0)
    add_attempt(session, order, "email", T0 + timedelta(minutes=1), variant="retired")
    add_reads(session, order, 2)
    session.commit()
    [result] = template_results(session, T0, T0 + HOUR).results
    assert (result.channel, result.variant, result.sent, result.orders, result.come_back_rate) == (
        "email",
        "retired",
        1,
        1,
        1.0,
    )
