-- One Emporium checkout as a pgbench script: POST /api/v1/cart/items (1 unit) then
-- POST /api/v1/checkout, statement for statement and transaction for transaction.
-- Run it with bench/pgbench_checkout.py --run, which prepares the data and passes
--   -D product_lo=.. -D product_hi=..   a contiguous id range of bench products (1 warehouse, huge stock)
--   -D run=<hex>                        makes idempotency keys unique across runs
--   -D ping=1|0                         the pool's pre-ping (BEGIN; ";"; ROLLBACK) per connection checkout
-- Each pgbench client is the bench user whose api_token_hash is 'pgbench-user-' || lpad(client_id, 51, '0')
-- (one user per client, so no two clients share a cart, as no two browsers share one).
--
-- Source of every statement: the trace `bench/pgbench_checkout.py` captures with a
-- before_cursor_execute listener (written to $TMPDIR/emporium-checkout.capture.json). Column lists, WHERE
-- clauses, locks and RETURNING are copied from it; values the app computes in Python
-- (timestamps, JSON bodies, correlation ids) are SQL expressions here. Every variable is
-- cast so the script works with -M simple and -M prepared. `--check` compares the
-- [tag] comments below (verb + table, in order) with a fresh capture.

\set uix :client_id
\set pid random(:product_lo, :product_hi)
\set k random(1, 999999999999)

-- ============ add to cart: the request's transaction (14 statements) ============
\if :ping
BEGIN;
;
ROLLBACK;
\endif
BEGIN;
-- [SELECT users] auth: API token lookup (auth/service.py user_for_token)
SELECT users.id, users.email, users.name, users.role, users.seller_id, users.password_hash, users.api_token_hash, users.created_at FROM users WHERE users.api_token_hash = 'pgbench-user-' || lpad(:uix::text, 51, '0') \gset u_
-- [SELECT products] session.get(Product)
SELECT products.id, products.seller_id, products.category_id, products.external_ref, products.title, products.description, products.brand, products.price, products.currency, products.images, products.attributes, products.rating, products.review_count, products.is_active, products.search_vector, products.updated_at, products.created_at FROM products WHERE products.id = :pid::BIGINT;
-- [INSERT carts] get-or-create the user's cart
INSERT INTO carts (user_id) VALUES (:u_id::BIGINT) ON CONFLICT (user_id) DO NOTHING RETURNING carts.id;
-- [SELECT carts] lock the cart
SELECT carts.id, carts.user_id, carts.guest_token_hash, carts.updated_at, carts.created_at FROM carts WHERE carts.user_id = :u_id::BIGINT FOR UPDATE \gset c_
-- [UPDATE reservations] touch: extend the cart's reservations (reservation_ttl_seconds = 1800)
UPDATE reservations SET reserved_until=now() + interval '1800 seconds' WHERE reservations.cart_id = :c_id::BIGINT;
-- [SELECT cart_items] quantity already in the cart
SELECT cart_items.quantity FROM cart_items WHERE cart_items.cart_id = :c_id::BIGINT AND cart_items.product_id = :pid::BIGINT;
-- [SELECT stock] availability + any expired reservations to reap first
SELECT (SELECT coalesce(sum(stock.quantity - stock.reserved), 0::INTEGER) AS coalesce_1 FROM stock WHERE stock.product_id = :pid::BIGINT) AS anon_1, EXISTS (SELECT * FROM reservations WHERE reservations.product_id = :pid::BIGINT AND reservations.reserved_until < now()) AS anon_2;
-- [SELECT stock] lock the product's stock rows, warehouse order
SELECT stock.warehouse_id, stock.quantity - stock.reserved AS anon_1 FROM stock WHERE stock.product_id = :pid::BIGINT ORDER BY stock.warehouse_id FOR UPDATE \gset s_
-- [UPDATE stock] reserve
UPDATE stock SET reserved=(stock.reserved + 1::INTEGER), updated_at=now() WHERE stock.product_id = :pid::BIGINT AND stock.warehouse_id = :s_warehouse_id::BIGINT AND stock.quantity - stock.reserved >= 1::INTEGER RETURNING stock.reserved \gset s_
-- [INSERT reservations]
INSERT INTO reservations (cart_id, product_id, warehouse_id, quantity, reserved_until) VALUES (:c_id::BIGINT, :pid::BIGINT, :s_warehouse_id::BIGINT, 1::INTEGER, now() + interval '1800 seconds') RETURNING reservations.id, reservations.cart_id, reservations.product_id, reservations.warehouse_id, reservations.quantity, reservations.reserved_until, reservations.created_at;
-- [INSERT cart_items]
INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (:c_id::BIGINT, :pid::BIGINT, 1::INTEGER) ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = (cart_items.quantity + excluded.quantity);
-- [SELECT cart_items] the cart view returned to the client
SELECT cart_items.product_id, products.title, products.price, cart_items.quantity, anon_1.reserved_until, coalesce(anon_2.available, 0::INTEGER) AS coalesce_1 FROM cart_items JOIN products ON products.id = cart_items.product_id LEFT OUTER JOIN (SELECT reservations.product_id AS product_id, min(reservations.reserved_until) AS reserved_until FROM reservations WHERE reservations.cart_id = :c_id::BIGINT GROUP BY reservations.product_id) AS anon_1 ON anon_1.product_id = cart_items.product_id LEFT OUTER JOIN (SELECT stock.product_id AS product_id, coalesce(sum(stock.quantity - stock.reserved), 0::INTEGER) AS available FROM stock WHERE stock.product_id IN (SELECT cart_items.product_id FROM cart_items WHERE cart_items.cart_id = :c_id::BIGINT) GROUP BY stock.product_id) AS anon_2 ON anon_2.product_id = cart_items.product_id WHERE cart_items.cart_id = :c_id::BIGINT ORDER BY cart_items.added_at, cart_items.product_id;
-- [INSERT audit_logs] inventory.reserved
INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values, new_values, correlation_id, ip) VALUES (:u_id::BIGINT, 'inventory.reserved', 'product', :pid::VARCHAR, jsonb_build_object('reserved', jsonb_build_object(:s_warehouse_id::text, :s_reserved::integer - 1)), jsonb_build_object('reserved', jsonb_build_object(:s_warehouse_id::text, :s_reserved::integer)), 'pgbench-' || :run::text || '-' || :k::text, '127.0.0.1') RETURNING audit_logs.id, audit_logs.created_at;
-- [INSERT outbox] stock.changed
INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, processed_at) VALUES ('stock.changed', 'product', :pid::VARCHAR, jsonb_build_object('reserved', jsonb_build_object(:s_warehouse_id::text, :s_reserved::integer)), NULL::TIMESTAMP WITH TIME ZONE) RETURNING outbox.id, outbox.created_at;
COMMIT;

-- ============ checkout (20 statements in 5 transactions) ============
-- request session: authentication, then the endpoint closes it (rolled back)
\if :ping
BEGIN;
;
ROLLBACK;
\endif
BEGIN;
-- [SELECT users] auth: API token lookup
SELECT users.id, users.email, users.name, users.role, users.seller_id, users.password_hash, users.api_token_hash, users.created_at FROM users WHERE users.api_token_hash = 'pgbench-user-' || lpad(:uix::text, 51, '0');
ROLLBACK;

-- idempotency claim (IdempotencyStore.begin; Valkey SET NX first, not SQL)
\if :ping
BEGIN;
;
ROLLBACK;
\endif
BEGIN;
-- [INSERT idempotency_keys]
INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES (:u_id::BIGINT, 'pgb-' || :run::text || '-' || :uix::text || '-' || :k::text, 'df5d5ca6a0a3424880f940739b15ad7b7a5a9221323443da5cc682e6a25ee77d') ON CONFLICT ON CONSTRAINT uq_idempotency_keys_user_key DO UPDATE SET request_hash = excluded.request_hash, state = 'processing'::VARCHAR, response_status = NULL::INTEGER, response_body = 'null'::JSONB, order_id = NULL::BIGINT, expires_at = (now() + interval '24 hours'), created_at = now() WHERE idempotency_keys.expires_at < now() RETURNING idempotency_keys.id;
COMMIT;

-- order creation unit of work (orders.create_from_cart)
\if :ping
BEGIN;
;
ROLLBACK;
\endif
BEGIN;
-- [SELECT carts] the cart with its items and products, cart row locked
SELECT carts.id, cart_items.cart_id, cart_items.product_id, cart_items.quantity, cart_items.added_at, products.id AS id_1, products.seller_id, products.category_id, products.external_ref, products.title, products.description, products.brand, products.price, products.currency, products.images, products.attributes, products.rating, products.review_count, products.is_active, products.search_vector, products.updated_at, products.created_at FROM carts JOIN cart_items ON cart_items.cart_id = carts.id JOIN products ON products.id = cart_items.product_id WHERE carts.user_id = :u_id::BIGINT ORDER BY cart_items.product_id FOR UPDATE OF carts \gset ci_
-- [SELECT reservations] lock the cart's reservations
SELECT reservations.id, reservations.cart_id, reservations.product_id, reservations.warehouse_id, reservations.quantity, reservations.reserved_until, reservations.created_at FROM reservations WHERE reservations.cart_id = :c_id::BIGINT ORDER BY reservations.id FOR UPDATE \gset rv_
-- [INSERT orders]
INSERT INTO orders (user_id, status, subtotal, shipping_total, total, shipping_address, idempotency_key, paid_at, updated_at, created_at) VALUES (:u_id::BIGINT, 'pending_payment', :ci_price::NUMERIC(14, 2) * :ci_quantity::INTEGER, 0::NUMERIC(14, 2), :ci_price::NUMERIC(14, 2) * :ci_quantity::INTEGER, '{"name": "Bench Buyer", "line1": "1 Load St", "line2": "", "city": "Testville", "postal_code": "12345", "country": "US"}'::JSONB, 'pgb-' || :run::text || '-' || :uix::text || '-' || :k::text, NULL::TIMESTAMP WITH TIME ZONE, now(), now()) RETURNING orders.id, orders.currency \gset o_
-- [DELETE reservations] reservations become allocations; the cart is emptied
WITH gone AS (DELETE FROM reservations WHERE id = ANY(ARRAY[:rv_id::BIGINT])) DELETE FROM cart_items WHERE cart_id = :c_id::BIGINT;
-- [INSERT audit_logs] order.created
INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values, new_values, correlation_id, ip) VALUES (:u_id::BIGINT, 'order.created', 'order', :o_id::VARCHAR, 'null'::JSONB, jsonb_build_object('total', (:ci_price::NUMERIC(14, 2) * :ci_quantity::INTEGER)::text, 'items', 1), 'pgbench-' || :run::text || '-' || :k::text, '127.0.0.1') RETURNING audit_logs.id, audit_logs.created_at;
-- [INSERT order_allocations]
INSERT INTO order_allocations (order_id, product_id, warehouse_id, quantity) VALUES (:o_id::BIGINT, :rv_product_id::BIGINT, :rv_warehouse_id::BIGINT, :rv_quantity::INTEGER) RETURNING order_allocations.id, order_allocations.state;
-- [INSERT order_events] pending_payment
INSERT INTO order_events (order_id, status, note, actor_user_id, created_at) VALUES (:o_id::BIGINT, 'pending_payment', '', :u_id::BIGINT, now()) RETURNING order_events.id;
-- [INSERT order_items]
INSERT INTO order_items (order_id, product_id, seller_id, title, unit_price, quantity, line_total) VALUES (:o_id::BIGINT, :ci_product_id::BIGINT, :ci_seller_id::BIGINT, 'pgbench product ' || :ci_product_id::text, :ci_price::NUMERIC(12, 2), :ci_quantity::INTEGER, :ci_price::NUMERIC(14, 2) * :ci_quantity::INTEGER) RETURNING order_items.id;
-- [INSERT payments] pending, gateway idempotency key = order-<id>
INSERT INTO payments (order_id, gateway, idempotency_key, gateway_payment_id, status, amount, card_last4, error_code) VALUES (:o_id::BIGINT, 'simulated', 'order-' || :o_id::text, NULL::VARCHAR, 'pending', :ci_price::NUMERIC(14, 2) * :ci_quantity::INTEGER, '4242', NULL::VARCHAR) RETURNING payments.id, payments.currency, payments.updated_at, payments.created_at;
-- [INSERT outbox] order.created
INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, processed_at) VALUES ('order.created', 'order', :o_id::VARCHAR, '{}'::JSONB, NULL::TIMESTAMP WITH TIME ZONE) RETURNING outbox.id, outbox.created_at;
COMMIT;

-- payment: authorize + capture at the in-process simulated gateway (no SQL)

-- mark-paid unit of work (orders.mark_paid)
\if :ping
BEGIN;
;
ROLLBACK;
\endif
BEGIN;
-- [UPDATE orders] pending_payment -> paid
UPDATE orders SET status='paid', paid_at=now(), updated_at=now() WHERE orders.id = :o_id::BIGINT AND orders.status = 'pending_payment' RETURNING orders.id, orders.user_id, orders.status, orders.currency, orders.subtotal, orders.shipping_total, orders.total, orders.shipping_address, orders.idempotency_key, orders.paid_at, orders.updated_at, orders.created_at;
-- [UPDATE order_allocations] held -> committed
UPDATE order_allocations SET state='committed' WHERE order_allocations.order_id = :o_id::BIGINT AND order_allocations.state = 'held' RETURNING order_allocations.id, order_allocations.order_id, order_allocations.product_id, order_allocations.warehouse_id, order_allocations.quantity, order_allocations.state;
-- [UPDATE stock] take the units: quantity and reserved both go down
UPDATE stock SET quantity=(stock.quantity + (-:rv_quantity::INTEGER)), reserved=(stock.reserved + (-:rv_quantity::INTEGER)), updated_at=now() WHERE stock.product_id = :rv_product_id::BIGINT AND stock.warehouse_id = :rv_warehouse_id::BIGINT;
-- [UPDATE payments] pending -> captured
UPDATE payments SET gateway_payment_id='pay_' || :run::text || '_' || :o_id::text, status='captured', updated_at=now() WHERE payments.order_id = :o_id::BIGINT AND payments.status = 'pending';
-- [INSERT audit_logs] payment.completed + inventory.adjusted (one insertmanyvalues statement)
INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values, new_values, correlation_id, ip) SELECT p0::BIGINT, p1::VARCHAR, p2::VARCHAR, p3::VARCHAR, p4::JSONB, p5::JSONB, p6::VARCHAR, p7::VARCHAR FROM (VALUES (:u_id::BIGINT, 'payment.completed'::VARCHAR, 'order'::VARCHAR, :o_id::VARCHAR, 'null'::JSONB, jsonb_build_object('amount', (:ci_price::NUMERIC(14, 2) * :ci_quantity::INTEGER)::text, 'gateway_payment_id', 'pay_' || :run::text || '_' || :o_id::text), ('pgbench-' || :run::text || '-' || :k::text)::VARCHAR, '127.0.0.1'::VARCHAR, 0), (:u_id::BIGINT, 'inventory.adjusted'::VARCHAR, 'product'::VARCHAR, :rv_product_id::VARCHAR, 'null'::JSONB, jsonb_build_object('warehouse_id', :rv_warehouse_id::BIGINT, 'quantity', -:rv_quantity::INTEGER), ('pgbench-' || :run::text || '-' || :k::text)::VARCHAR, '127.0.0.1'::VARCHAR, 1)) AS imp_sen(p0, p1, p2, p3, p4, p5, p6, p7, sen_counter) ORDER BY sen_counter RETURNING audit_logs.id, audit_logs.created_at, audit_logs.id AS id__1;
-- [INSERT order_events] paid
INSERT INTO order_events (order_id, status, note, actor_user_id, created_at) VALUES (:o_id::BIGINT, 'paid', '', :u_id::BIGINT, now()) RETURNING order_events.id;
-- [INSERT outbox] order.paid + stock.changed (one insertmanyvalues statement)
INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload, processed_at) SELECT p0::VARCHAR, p1::VARCHAR, p2::VARCHAR, p3::JSONB, p4::TIMESTAMP WITH TIME ZONE FROM (VALUES ('order.paid'::VARCHAR, 'order'::VARCHAR, :o_id::VARCHAR, '{}'::JSONB, NULL::TIMESTAMP WITH TIME ZONE, 0), ('stock.changed'::VARCHAR, 'product'::VARCHAR, :rv_product_id::VARCHAR, '{}'::JSONB, NULL::TIMESTAMP WITH TIME ZONE, 1)) AS imp_sen(p0, p1, p2, p3, p4, sen_counter) ORDER BY sen_counter RETURNING outbox.id, outbox.created_at, outbox.id AS id__1;
COMMIT;

-- idempotency completion (IdempotencyStore.complete): store the 201 response
\if :ping
BEGIN;
;
ROLLBACK;
\endif
BEGIN;
-- [UPDATE idempotency_keys]
UPDATE idempotency_keys SET state='completed', response_status=201::INTEGER, response_body=jsonb_build_object('id', :o_id::BIGINT, 'status', 'paid', 'currency', 'USD', 'subtotal', :ci_price::text, 'shipping_total', '0.00', 'total', :ci_price::text, 'shipping_address', '{"city": "Testville", "name": "Bench Buyer", "line1": "1 Load St", "line2": "", "country": "US", "postal_code": "12345"}'::JSONB, 'items', jsonb_build_array(jsonb_build_object('product_id', :ci_product_id::BIGINT, 'title', 'pgbench product ' || :ci_product_id::text, 'unit_price', :ci_price::text, 'quantity', :ci_quantity::INTEGER, 'line_total', :ci_price::text)), 'timeline', jsonb_build_array(jsonb_build_object('status', 'pending_payment', 'note', '', 'at', now()), jsonb_build_object('status', 'paid', 'note', '', 'at', now())), 'shipments', '[]'::JSONB, 'payment', jsonb_build_object('status', 'captured', 'amount', :ci_price::text, 'card_last4', '4242', 'error_code', NULL), 'created_at', now(), 'paid_at', now()), order_id=:o_id::BIGINT WHERE idempotency_keys.user_id = :u_id::BIGINT AND idempotency_keys.key = 'pgb-' || :run::text || '-' || :uix::text || '-' || :k::text;
COMMIT;
