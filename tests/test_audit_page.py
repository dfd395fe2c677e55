"""The audit's HTML page names the network and links addresses and transactions to the chain's
explorer when its profile names one; on a local chain everything stays plain text."""

from __future__ import annotations

from liandong.audit.report import AuditedOrder, AuditReport, Movement, html_report

ESCROW = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
BUYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PAID_TX = "0x" + "ab" * 32
WITHDRAWAL_TX = "0x" + "cd" * 32


def _report(chain_id: int) -> AuditReport:
    order = AuditedOrder("0x" + "01" * 32, BUYER, "0x" + "00" * 20, 10, 0, 5, PAID_TX, state="delivered")
    withdrawal = Movement("withdrawal", "0x" + "00" * 20, BUYER, 10, 6, WITHDRAWAL_TX)
    return AuditReport(ESCROW, chain_id, 1, 9, [order], [], [withdrawal])


def test_a_profiled_chain_links_to_its_explorer() -> None:
    page = html_report(_report(8453))
    assert "(Base, chain 8453)" in page
    assert f'<a href="https://basescan.org/address/{ESCROW}">{ESCROW}</a>' in page
    assert f'<a href="https://basescan.org/address/{BUYER}">' in page
    assert f'<a href="https://basescan.org/tx/{PAID_TX}">' in page
    assert f'<a href="https://basescan.org/tx/{WITHDRAWAL_TX}">' in page


def test_a_local_chain_stays_plain() -> None:
    page = html_report(_report(31337))
    assert "(Local chain A, chain 31337)" in page
    assert "href=" not in page
    assert PAID_TX in page
