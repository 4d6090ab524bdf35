from __future__ import annotations

from prometheus_client import Counter, Histogram

ORDERS = Counter("orders_total", "Orders reaching a status", ["status"])
ORDER_VALUE = Histogram(
    "order_value_dollars",
    "Value of paid orders",
    buckets=(5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
CHECKOUT_ATTEMPTS = Counter("checkout_attempts", "Checkout requests that reached the service")
CHECKOUT_SUCCESS = Counter("checkout_success", "Checkouts that ended with a paid order")
CHECKOUT_BATCH = Histogram(
    "checkout_batch_orders",
    "Checkouts served by one statement: placing orders or marking them paid",
    ["statement"],
    buckets=(1, 2, 4, 8, 16, 32),
)
REFUNDS = Counter(
    "refunds_total",
    "Refunds at the gateway (cancelled and refunded orders), by outcome",
    ["status"],
)
