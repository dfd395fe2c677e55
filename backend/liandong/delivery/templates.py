"""Delivery messages, written by the merchant, with A/B variants.

Merchants edit templates through the API, so they are rendered in Jinja2's sandbox: a template can
read the notice's fields, never Python's internals. A variant is chosen from a hash of the order id,
so an order gets the same message on every node and every resend, and the A/B results (attempts
and key reads, per variant) compare like with like. The built-in variants serve a channel that has
no active template in the database.
"""

from __future__ import annotations

import hashlib
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

import jinja2
import jinja2.exceptions
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import SandboxedEnvironment
from sqlmodel import Session, col, select

from liandong.delivery.channels import ChannelError, DeliveryNotice
from liandong.store.models import MessageTemplate

VARIABLES = frozenset({"product_name", "quantity", "order_url", "chain_order_id", "commitment"})
"""What a template may use: where and what the buyer's order is, never its keys."""


class TemplateError(Exception):
    """A template the shop cannot render; the message says what to fix."""


@dataclass(frozen=True)
class Template:
    variant: str
    subject: str
    body: str
    weight: int = 1


@dataclass(frozen=True)
class RenderedMessage:
    variant: str
    subject: str
    """One line: whitespace (newlines too) is collapsed, as mail headers need."""
    body: str


_EMAIL_SHORT = Template(
    "A",
    "您的卡密已就绪 / Your keys are ready: {{ product_name }}",
    """您购买的 {{ product_name }} × {{ quantity }} 已发货，请打开订单页查看卡密：
Your {{ product_name }} × {{ quantity }} is ready. Open your order page to read the keys:

{{ order_url }}
""",  # noqa: RUF001
)

_EMAIL_FULL = Template(
    "B",
    "订单已完成 / Order complete: {{ product_name }} × {{ quantity }}",  # noqa: RUF001
    """您好，

您的订单已完成：{{ product_name }} × {{ quantity }}。
卡密只显示在订单页上，不会通过邮件发送：
{{ order_url }}

· 用下单时保存的订单链接打开，或用付款的钱包签名登录。
· 请尽快兑换卡密并妥善保管，不要转发本邮件。
{% if commitment %}
· 链上交付凭证：{{ commitment }}，可在订单页核对卡密未被改动。
{% endif %}

Hello,

Your order is complete: {{ product_name }} × {{ quantity }}.
The keys are shown only on your order page, never in e-mail:
{{ order_url }}

· Open it with the order link you saved when ordering, or sign in with the wallet that paid.
· Redeem your keys soon and keep them private; do not forward this message.
{% if commitment %}
· On-chain delivery commitment: {{ commitment }}; the order page checks the keys against it.
{% endif %}

订单号 / Order: {{ chain_order_id }}
""",  # noqa: RUF001
)

DEFAULT_TEMPLATES: Mapping[str, tuple[Template, ...]] = {
    "email": (_EMAIL_SHORT, _EMAIL_FULL),
    "sms": (
        Template("A", "", "您的卡密已就绪 / Your keys are ready: {{ order_url }}"),
        Template(
            "B",
            "",
            "{{ product_name }} ×{{ quantity }} 已发货，打开订单页查看卡密 / "  # noqa: RUF001
            "Your keys are ready, open: {{ order_url }}",
        ),
    ),
}
"""Used for a channel without an active template in the database (the webhook sends no text)."""

_SAMPLE = DeliveryNotice(
    order_id=0,
    chain_order_id="0x" + "00" * 32,
    product_name="Sample product",
    quantity=1,
    email="buyer@example.com",
    phone="+10000000000",
    payer="0x" + "00" * 20,
    commitment="0x" + "11" * 32,
    order_url="https://shop.example/orders/0x" + "00" * 32,
)

MAX_SUBJECT_CHARS = 1000
MAX_BODY_CHARS = 64 * 1024
"""What one rendered message may come to; a longer one is refused (at save, and at send)."""
RENDER_SECONDS = 0.5
"""What rendering one message may take."""
FILTERS = frozenset({"upper", "lower", "title", "capitalize", "trim", "default", "truncate", "e", "escape"})
"""Filters a template may use: none of them makes text much longer than what it is given."""
TESTS = frozenset({"defined", "undefined", "none", "number", "string"})
ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Const,
    nodes.If,
    nodes.CondExpr,
    nodes.Not,
    nodes.And,
    nodes.Or,
    nodes.Compare,
    nodes.Operand,
    nodes.Concat,
    nodes.Filter,
    nodes.Test,
    nodes.Getitem,
    nodes.Slice,
)
"""The syntax a template may use: text, the notice's fields, conditions, `~` and the filters
above, indexes and slices of the fields. No arithmetic (`'x' * 10**8`), loops, calls, macros,
attributes, literals of lists or dicts: nothing that makes output grow faster than the template's
own text."""


class BoundedSandbox(SandboxedEnvironment):
    """Jinja2's sandbox, with arithmetic refused at run time too (`*`, `**`, `+`, `//`, `%`): a
    template that got past the syntax check (stored before it existed) still cannot blow up."""

    intercepted_binops = frozenset({"*", "**", "+", "//", "%", "-", "/"})
    intercepted_unops = frozenset({"-", "+"})

    def call_binop(self, context: object, operator: str, left: object, right: object) -> object:
        raise jinja2.exceptions.SecurityError(f"the operator {operator!r} is not allowed in a message")

    def call_unop(self, context: object, operator: str, arg: object) -> object:
        raise jinja2.exceptions.SecurityError(f"the operator {operator!r} is not allowed in a message")


_ENV = BoundedSandbox(
    undefined=StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.globals.clear()  # no range(), lipsum(), dict(), cycler(), joiner(), namespace()


@lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def _variables(notice: DeliveryNotice) -> dict[str, object]:
    return {
        "product_name": notice.product_name,
        "quantity": notice.quantity,
        "order_url": notice.order_url,
        "chain_order_id": notice.chain_order_id,
        "commitment": notice.commitment or "",
    }


def _bounded(source: str, variables: dict[str, object], limit: int, deadline: float) -> str:
    """Renders piece by piece, stopping as soon as the text passes `limit` or time runs out."""
    pieces, size = [], 0
    for piece in _compile(source).generate(variables):
        size += len(piece)
        if size > limit:
            raise jinja2.TemplateRuntimeError(f"the message is longer than {limit} characters")
        if time.monotonic() > deadline:
            raise jinja2.TemplateRuntimeError(f"the message took longer than {RENDER_SECONDS} s to render")
        pieces.append(piece)
    return "".join(pieces)


def _render(template: Template, notice: DeliveryNotice) -> RenderedMessage:
    """Raises Jinja2's errors: a missing variable, an unsafe access or operator, a syntax error,
    a message too long or too slow."""
    variables = _variables(notice)
    deadline = time.monotonic() + RENDER_SECONDS
    subject = _bounded(template.subject, variables, MAX_SUBJECT_CHARS, deadline)
    body = _bounded(template.body, variables, MAX_BODY_CHARS, deadline)
    return RenderedMessage(template.variant, " ".join(subject.split()), body)


def _check_source(part: str, source: str) -> None:
    """Refuses, in every branch and not only the one a sample takes, names a notice does not have
    and the underscore attributes through which sandbox escapes are attempted."""
    try:
        tree = _ENV.parse(source)
        unknown = meta.find_undeclared_variables(tree) - VARIABLES  # compiles: finds unknown filters
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{part}, line {exc.lineno}: {exc.message}") from exc
    if unknown:
        raise TemplateError(
            f"{part}: unknown variable(s) {', '.join(sorted(unknown))}; "
            f"available: {', '.join(sorted(VARIABLES))}"
        )
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, ALLOWED_NODES):
            raise TemplateError(
                f"{part}, line {node.lineno}: {type(node).__name__.lower()} is not allowed in a message "
                "(text, the variables, if/else, ~ and simple filters are)"
            )
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            raise TemplateError(
                f"{part}, line {node.lineno}: the filter {node.name!r} is not allowed; "
                f"allowed: {', '.join(sorted(FILTERS))}"
            )
        if isinstance(node, nodes.Test) and node.name not in TESTS:
            raise TemplateError(f"{part}, line {node.lineno}: the test {node.name!r} is not allowed")
    accessed = [(node.lineno, node.attr) for node in tree.find_all(nodes.Getattr)] + [
        (node.lineno, node.arg.value)
        for node in tree.find_all(nodes.Getitem)
        if isinstance(node.arg, nodes.Const)
    ]
    for lineno, name in accessed:
        if isinstance(name, str) and name.startswith("_"):
            raise TemplateError(f"{part}, line {lineno}: access to {name!r} is not allowed")


def check_template(subject: str, body: str) -> None:
    """Validates a merchant's template before it is saved; raises TemplateError saying what is wrong."""
    _check_source("subject", subject)
    _check_source("body", body)
    try:
        _render(Template("check", subject, body), _SAMPLE)
    except jinja2.TemplateError as exc:
        raise TemplateError(f"the template cannot be rendered: {exc}") from exc


def _bucket(chain_order_id: str, total_weight: int) -> int:
    digest = hashlib.sha256(chain_order_id.lower().encode()).digest()
    return int.from_bytes(digest[:8], "big") % total_weight


class TemplateBook:
    """The active templates per channel, as last loaded from the database."""

    def __init__(self, templates: Iterable[MessageTemplate] = ()) -> None:
        self._variants: dict[str, tuple[Template, ...]] = {}
        self._load(templates)

    def reload(self, session: Session) -> None:
        """Picks up the merchant's edits; call after templates change."""
        self._load(session.exec(select(MessageTemplate).where(col(MessageTemplate.active))))

    def _load(self, rows: Iterable[MessageTemplate]) -> None:
        variants: dict[str, list[Template]] = {}
        for row in rows:
            if row.active and row.weight > 0:
                variants.setdefault(row.channel, []).append(
                    Template(row.variant, row.subject, row.body, row.weight)
                )
        # Sorted by name, so the buckets map to the same variants whatever order the rows came in.
        self._variants = {
            channel: tuple(sorted(found, key=lambda template: template.variant))
            for channel, found in variants.items()
        }

    def variants(self, channel: str) -> tuple[Template, ...]:
        """The channel's variants in use: the merchant's active ones, else the built-in ones."""
        return self._variants.get(channel) or DEFAULT_TEMPLATES.get(channel, ())

    def pick(self, channel: str, chain_order_id: str) -> Template:
        """The order's variant, by weight; the same for one order everywhere and always."""
        variants = self.variants(channel)
        if not variants:
            raise ChannelError(f"no message template for channel {channel!r}")
        bounds = list(accumulate(template.weight for template in variants))
        return variants[bisect_right(bounds, _bucket(chain_order_id, bounds[-1]))]

    def render(self, channel: str, notice: DeliveryNotice) -> RenderedMessage:
        """The order's message; a template that fails to render fails the channel for this notice."""
        template = self.pick(channel, notice.chain_order_id)
        try:
            return _render(template, notice)
        except jinja2.TemplateError as exc:
            raise ChannelError(f"template {channel}/{template.variant}: {exc}", template.variant) from exc
