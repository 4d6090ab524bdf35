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
