"""The confirmation policy: when a payment is settled enough on its chain for the order's keys to go
out, by chain and by order size.

A policy's base is either a block count (blocks on top of the payment's block; 0 delivers on
inclusion) or a block tag, `safe` or `finalized`: the payment's block must be at or under the block
the chain's node reports for that tag (`eth_getBlockByNumber("safe")`), which on proof-of-stake
Ethereum means justified (`safe`, about an epoch behind the head) or finalized (about two epochs,
~13 min), and elsewhere whatever the chain's node means by it (Polygon's milestones, BSC's fast
finality, an OP Stack chain's L1-derived blocks).

Large orders (at or above their token's threshold) need the stricter of the base and
`large_order_confirmations`. With a block count that is the larger count. With a tag it is both:
the payment's block under the tag AND `large_order_confirmations` blocks on top of it. That is
never less strict than either rule alone, whatever the distance between the tag and the head is on
a given chain (on Ethereum the tag alone is already deeper; on a chain whose `safe` follows the
head closely the block count still holds).

Which policy a chain gets is `policy_for`'s: the chain's own override, else the merchant's
`LIANDONG_CONFIRMATIONS`, else the chain profile's default (`profiles.toml`); a chain with none of
them is refused with the setting to fix. It lives in `chain` (not in the indexer) because the node's
composition root picks one per chain and the indexer's store only applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from liandong.chain.profiles import ConfirmationTag, ProfileNotFoundError, profile
from liandong.core.config import Settings
from liandong.core.errors import InvalidError

TAGS: tuple[ConfirmationTag, ...] = get_args(ConfirmationTag)
"""The block tags a policy may name: ("safe", "finalized")."""


class ConfirmationPolicyError(InvalidError):
    """A confirmation policy that is neither a block count nor a known tag, or a chain without one."""


@dataclass(frozen=True)
class Requirement:
    """What one order's payment must reach before its keys go out."""

    blocks: int
    """Blocks on top of the payment's block (0: its inclusion is enough)."""
    tag: ConfirmationTag | None = None
    """The block tag the payment's block must be at or under, besides `blocks`; None: no tag."""

    @property
    def immediate(self) -> bool:
        """Met by the payment's inclusion alone."""
        return self.blocks == 0 and self.tag is None

    def met(self, depth: int, block_number: int, tagged: int | None) -> bool:
        """Whether a payment in block `block_number`, `depth` blocks under the head, is confirmed
        when the tag's block is number `tagged` (None: not known, so no tag is reached)."""
        if depth < self.blocks:
            return False
        return self.tag is None or (tagged is not None and block_number <= tagged)


def parse_confirmations(value: int | str) -> int | ConfirmationTag:
    """A policy base from a setting or an override: a count (a digit string too), or a tag."""
    if isinstance(value, bool):  # an int to Python, never a count to a merchant
        raise ConfirmationPolicyError(f"confirmations must be a block count or one of {TAGS}, not {value}")
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return int(text)
        for tag in TAGS:
            if text == tag:
                return tag
        raise ConfirmationPolicyError(
            f"confirmations must be a block count or one of {', '.join(TAGS)}, not {value!r}"
        )
    if value < 0:
        raise ConfirmationPolicyError(f"confirmations must not be negative (got {value})")
    return value


@dataclass(frozen=True)
class ConfirmationPolicy:
    """How settled a payment must be before its keys go out, by the order's size: a block count or
    a block tag for every order, and for large ones `large_order_confirmations` blocks as well
    (see the module's docstring for what "stricter" means with a tag)."""

    confirmations: int | ConfirmationTag = 0
    large_order_confirmations: int = 3
    large_order_thresholds: dict[str, int] | None = None
    """Token address → amount in base units that makes an order large (addresses any case)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "confirmations", parse_confirmations(self.confirmations))
        if self.large_order_confirmations < 0:
            raise ConfirmationPolicyError("large_order_confirmations must not be negative")
        if self.large_order_thresholds:
            lowered = {token.lower(): amount for token, amount in self.large_order_thresholds.items()}
            object.__setattr__(self, "large_order_thresholds", lowered)

    @property
    def tag(self) -> ConfirmationTag | None:
        """The block tag the indexer must read at each head; None for a block count."""
        return self.confirmations if isinstance(self.confirmations, str) else None

    def large(self, token: str, amount: int) -> bool:
        threshold = (self.large_order_thresholds or {}).get(token.lower())
        return threshold is not None and amount >= threshold

    def required(self, token: str, amount: int) -> Requirement:
        """What an order of `amount` (base units) of `token` waits for."""
        large = self.large(token, amount)
        if isinstance(self.confirmations, str):
            return Requirement(self.large_order_confirmations if large else 0, self.confirmations)
        if large:
            return Requirement(max(self.confirmations, self.large_order_confirmations))
        return Requirement(self.confirmations)


def policy_for(
    settings: Settings, chain_id: int, *, overrides: int | str | None = None
) -> ConfirmationPolicy:
    """Chain `chain_id`'s policy: `overrides` (the chain's own setting) if given, else the
    merchant's `settings.confirmations` if set, else the chain profile's default; the large-order
    rule always from `settings`. A chain without a profile and without a setting is refused."""
    base: int | str | None = overrides if overrides is not None else settings.confirmations
    if base is None:
        try:
            base = profile(chain_id).confirmations
        except ProfileNotFoundError:
            raise ConfirmationPolicyError(
                f"chain {chain_id} has no chain profile, so no default confirmation policy: set"
                " LIANDONG_CONFIRMATIONS (or the chain's `confirmations` in LIANDONG_CHAINS) to a"
                f" block count or one of {', '.join(TAGS)}"
            ) from None
    return ConfirmationPolicy(
        parse_confirmations(base),
        settings.large_order_confirmations,
        dict(settings.large_order_thresholds),
    )
