"""The merchant's delivery messages: template variants per channel, checked before they are saved.

A template is checked by the delivery engine's own sandbox (`delivery/templates.py`) before it is
stored, so a message that would fail to render is refused when it is written, not at delivery.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlmodel import Session, col, select

from liandong.core.errors import InvalidError
from liandong.delivery.templates import DEFAULT_TEMPLATES, TemplateError, check_template
from liandong.store.models import MessageTemplate

TEMPLATED_CHANNELS = tuple(DEFAULT_TEMPLATES)
"""Channels that send a written message (the in-site page and the webhook send data)."""


class MessageError(InvalidError):
    """A template that cannot be saved; the message says what to fix."""


class TemplateIn(BaseModel):
    subject: str = Field(default="", max_length=200)
    body: str = Field(min_length=1, max_length=10000)
    weight: int = Field(default=1, ge=0, le=1000, description="Relative share of orders; 0 pauses it.")
    active: bool = True


class TemplateOut(TemplateIn):
    channel: str
    variant: str
    built_in: bool
    """A built-in text, in use while the channel has no active template of the merchant's."""


def list_templates(session: Session) -> list[TemplateOut]:
    stored = session.exec(
        select(MessageTemplate).order_by(col(MessageTemplate.channel), col(MessageTemplate.variant))
    ).all()
    listed = [TemplateOut(**row.model_dump(exclude={"id"}), built_in=False) for row in stored]
    for channel, variants in DEFAULT_TEMPLATES.items():
        listed += [
            TemplateOut(
                channel=channel,
                variant=template.variant,
                subject=template.subject,
                body=template.body,
                weight=template.weight,
                built_in=True,
            )
            for template in variants
        ]
    return listed


def save_template(session: Session, channel: str, variant: str, template: TemplateIn) -> TemplateOut:
    """Creates or replaces one variant; a template that would not render is refused, unsaved."""
    if channel not in TEMPLATED_CHANNELS:
        raise MessageError(
            f"channel {channel!r} has no message templates; those that do: {TEMPLATED_CHANNELS}"
        )
    try:
        check_template(template.subject, template.body)
    except TemplateError as error:
        raise MessageError(str(error)) from None
    row = session.exec(
        select(MessageTemplate).where(MessageTemplate.channel == channel, MessageTemplate.variant == variant)
    ).first() or MessageTemplate(channel=channel, variant=variant, body=template.body)
    for field, value in template.model_dump().items():
        setattr(row, field, value)
    session.add(row)
    session.commit()
    return TemplateOut(**template.model_dump(), channel=channel, variant=variant, built_in=False)


def delete_template(session: Session, channel: str, variant: str) -> bool:
    row = session.exec(
        select(MessageTemplate).where(MessageTemplate.channel == channel, MessageTemplate.variant == variant)
    ).first()
    if row is None:
        return False
    session.delete(row)
    session.commit()
    return True
