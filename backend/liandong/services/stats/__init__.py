"""The merchant dashboard's figures: delivery efficiency, sales, abnormal deliveries, stock, A/B results.

One module per figure, each reading the database on its own: `latency` (the efficiency board),
`alerting` (what needs the merchant now), `revenue` (sales), `abnormal` (the abnormal delivery
log), `stock` (stock levels), `pending` (the backlog the node owes) and `variants` (the message
templates' A/B results); `window` holds the time window they cover and the pieces several of them
share. Counting and grouping run in the database; what SQL cannot do the same way on SQLite and
PostgreSQL runs in Python over the window's rows: percentiles, time differences, and sums of token
amounts, which are decimal strings of up to 256 bits. A shop serving several chains gets each
figure broken down by chain too (`by_chain`, revenue per (chain, token)), every chain named by its
network. Everything is imported from here.
"""

from liandong.core.figures import PERCENTILES, percentile
from liandong.services.stats.abnormal import (
    AbnormalDelivery,
    AbnormalLog,
    AbnormalReason,
    AttemptsSummary,
    abnormal_deliveries,
)
from liandong.services.stats.alerting import ANOMALY_ALERT_WINDOW, Alert, AlertKind, ChainCount, alerts
from liandong.services.stats.latency import (
    HISTOGRAM_EDGES,
    TARGET_SHARE,
    ChainEfficiency,
    Efficiency,
    HistogramBucket,
    LatencySummary,
    efficiency,
)
from liandong.services.stats.pending import Backlog, ChainBacklog, backlog
from liandong.services.stats.revenue import ChainSales, HourSales, ProductSales, Sales, TokenSales, sales
from liandong.services.stats.stock import StockLevel, stock_levels
from liandong.services.stats.variants import TemplateResult, TemplateResults, template_results
from liandong.services.stats.window import (
    DEFAULT_WINDOW,
    MAX_WINDOW,
    REFUND_STATUSES,
    WindowError,
    network_name,
    resolve_window,
)

__all__ = [
    "ANOMALY_ALERT_WINDOW",
    "DEFAULT_WINDOW",
    "HISTOGRAM_EDGES",
    "MAX_WINDOW",
    "PERCENTILES",
    "REFUND_STATUSES",
    "TARGET_SHARE",
    "AbnormalDelivery",
    "AbnormalLog",
    "AbnormalReason",
    "Alert",
    "AlertKind",
    "AttemptsSummary",
    "Backlog",
    "ChainBacklog",
    "ChainCount",
    "ChainEfficiency",
    "ChainSales",
    "Efficiency",
    "HistogramBucket",
    "HourSales",
    "LatencySummary",
    "ProductSales",
    "Sales",
    "StockLevel",
    "TemplateResult",
    "TemplateResults",
    "TokenSales",
    "WindowError",
    "abnormal_deliveries",
    "alerts",
    "backlog",
    "efficiency",
    "network_name",
    "percentile",
    "resolve_window",
    "sales",
    "stock_levels",
    "template_results",
]
