-- One Emporium checkout as a pgbench script: POST /api/v1/cart/items (1 unit) then
-- POST /api/v1/checkout, statement for statement and transaction for transaction.
-- Run it with bench/pgbench_checkout.py --run, which prepares the data and passes
--   -D product_lo=.. -D product_hi=..   a contiguous id range of bench products (a stock row per warehouse, huge stock in the first)
--   -D run=<hex>                        makes idempotency keys unique across runs
--   -D u_id=0                           each client's user id, until its first transaction looks it up
-- Each pgbench client is the bench user whose api_token_hash is 'pgbench-user-' || lpad(client_id, 51, '0')
-- (one user per client, so no two clients share a cart, as no two browsers share one).
--
-- The statements are the application's own text (the trace `bench/pgbench_checkout.py`
-- captures: $TMPDIR/emporium-checkout.capture.json), with each $n parameter replaced by
-- the value the application sends, as a pgbench variable or an SQL expression
-- (timestamps, JSON bodies, correlation ids). Every variable is cast so the script works
-- with -M simple and -M prepared. `--check` compares the [tag] comments below (verb +
-- table of each statement's first clause, in order) with a fresh capture.

\set uix :client_id
\set pid random(:product_lo, :product_hi)
\set k random(1, 999999999999)

-- The caller: the server reads an API token's user once and keeps it for
-- EMPORIUM_USER_CACHE_SECONDS (auth/service.py UserCache), so a client placing
-- order after order costs no lookup; here, each pgbench client looks its user up in its
-- first transaction only. The capture is taken with the cache warm, so this lookup
-- carries no [tag].
\if :u_id = 0
SELECT id, email, name, role, seller_id, password_hash, api_token_hash, created_at FROM users WHERE api_token_hash = (('pgbench-user-' || lpad(:uix::text, 51, '0'))) \gset u_
\endif

-- ============ add to cart: 1 statement, committing on its own ============
-- [SELECT cart_add_item] take the cart, slide its holds, check the product and the line limit, reserve, return the lines (cart/service.py ADD_ITEM_SQL; the function is in migration 0004)
SELECT cart_add_item((:u_id::bigint), (NULL)::text, (NULL)::text, (:pid::bigint), (1)::int, ((now() + interval '1800 seconds'))::timestamptz, (1000)::int, (('pgbench-' || :run::text || '-' || :k::text))::text, ('127.0.0.1')::text);

-- ============ checkout: 2 statements ============
-- One checkout per statement, as the server sends them when checkouts come one at a time.
-- Under load a server process places several checkouts with one call (checkout_place_many,
-- migration 0015: checkout_place for each, in a subtransaction) and marks several orders
-- paid with one statement: fewer statements per order than this script replays.
-- order placement: one call, committing on its own; the Valkey SET NX comes first, not SQL
-- [SELECT checkout_place] claim the idempotency key, lock the cart and its holds, place the order: order, items, allocations, payment, timeline, audit, outbox; holds and lines go (order/service.py PLACE_SQL; the function is in migration 0005)
SELECT placed_id AS id, placed_total AS total, placed_items->0->>'product_id' AS product_id, placed_items->0->>'quantity' AS quantity FROM checkout_place((:u_id::bigint), (('pgb-' || :run::text || '-' || :uix::text || '-' || :k::text))::text, ('df5d5ca6a0a3424880f940739b15ad7b7a5a9221323443da5cc682e6a25ee77d')::text, ('{"name": "Bench Buyer", "line1": "1 Load St", "line2": "", "city": "Testville", "postal_code": "12345", "country": "US"}')::text, (now())::timestamptz, ((now() + interval '1800 seconds'))::timestamptz, ('simulated')::text, ('4242')::text, (('pgbench-' || :run::text || '-' || :k::text))::text, ('127.0.0.1')::text) \gset o_

-- payment: authorize + capture at the in-process simulated gateway, which keeps its
-- payments in Valkey (payment/ledger.py): no SQL

-- paying is one statement, run on its own (autocommit: no BEGIN/COMMIT)
-- [SELECT unnest] pay: orders paid, allocations committed, stock taken, payments captured, timeline, audit, outbox, idempotency answers; here for one order, as the server sends it for an order whose payment is ready alone (order/repository.py PAY_MANY_SQL)
WITH p AS ( SELECT * FROM unnest(ARRAY[(:o_id::bigint)::bigint], ARRAY[(now())::timestamptz], ARRAY[(('pay_' || :run::text || '_' || :o_id::text))::text], ARRAY[(:u_id::bigint)::bigint], ARRAY[(('pgbench-' || :run::text || '-' || :k::text))::text], ARRAY[('127.0.0.1')::text], ARRAY[(:u_id::bigint)::bigint], ARRAY[(201)::int], ARRAY[(jsonb_build_object('id', :o_id::bigint, 'status', 'paid', 'currency', 'USD', 'subtotal', :o_total::text, 'shipping_total', '0.00', 'total', :o_total::text, 'shipping_address', jsonb_build_object('name', 'Bench Buyer', 'line1', '1 Load St', 'line2', '', 'city', 'Testville', 'postal_code', '12345', 'country', 'US'), 'items', jsonb_build_array(jsonb_build_object('product_id', :o_product_id::bigint, 'title', ('pgbench product ' || :o_product_id::text), 'unit_price', :o_total::text, 'quantity', :o_quantity::int, 'line_total', :o_total::text)), 'timeline', jsonb_build_array(jsonb_build_object('status', 'pending_payment', 'note', '', 'at', now()), jsonb_build_object('status', 'paid', 'note', '', 'at', now())), 'shipments', '[]'::jsonb, 'payment', jsonb_build_object('status', 'captured', 'amount', :o_total::text, 'card_last4', '4242', 'error_code', NULL), 'created_at', now(), 'paid_at', now())::text)::text], ARRAY[(('pgb-' || :run::text || '-' || :uix::text || '-' || :k::text))::text]) AS p(id, at, charge, actor, cid, ip, answer_user, answer_status, answer_body, answer_key) ), o AS ( UPDATE orders SET status = 'paid', paid_at = p.at, updated_at = p.at FROM p WHERE orders.id = p.id AND orders.status = 'pending_payment' RETURNING orders.* ), taken AS ( UPDATE order_allocations SET state = 'committed' WHERE order_id IN (SELECT id FROM o) AND state = 'held' RETURNING order_id, product_id, warehouse_id, quantity ), stock_out AS ( UPDATE stock SET quantity = stock.quantity - t.quantity, reserved = stock.reserved - t.quantity, updated_at = now() FROM ( SELECT product_id, warehouse_id, sum(quantity)::int AS quantity FROM taken GROUP BY product_id, warehouse_id ORDER BY product_id, warehouse_id ) t WHERE stock.product_id = t.product_id AND stock.warehouse_id = t.warehouse_id ), payment AS ( UPDATE payments SET status = 'captured', gateway_payment_id = p.charge, updated_at = p.at FROM o JOIN p ON p.id = o.id WHERE payments.order_id = o.id AND payments.status = 'pending' ), timeline AS ( INSERT INTO order_events (order_id, status, note, actor_user_id, created_at) SELECT o.id, 'paid', '', p.actor, p.at FROM o JOIN p ON p.id = o.id ORDER BY o.id ), audit AS ( INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values, new_values, correlation_id, ip) SELECT p.actor, action, entity_type, entity_id, NULL, new_values, p.cid, p.ip FROM ( SELECT o.id AS order_id, 0 AS n, 0::bigint AS pr, 0::bigint AS w, 'payment.completed' AS action, 'order' AS entity_type, o.id::text AS entity_id, jsonb_build_object('amount', o.total::text, 'gateway_payment_id', p.charge) AS new_values FROM o JOIN p ON p.id = o.id UNION ALL SELECT t.order_id, 1, t.product_id, t.warehouse_id, 'inventory.adjusted', 'product', t.product_id::text, jsonb_build_object('warehouse_id', t.warehouse_id, 'quantity', -t.quantity) FROM taken t ) rows JOIN p ON p.id = rows.order_id ORDER BY rows.order_id, rows.n, rows.pr, rows.w ), event AS ( INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload) SELECT 'order.paid', 'order', o.id::text, '{}'::jsonb FROM o ORDER BY o.id ), answer AS ( UPDATE idempotency_keys k SET state = 'completed', response_status = p.answer_status, response_body = p.answer_body::json, order_id = o.id FROM o JOIN p ON p.id = o.id WHERE k.user_id = p.answer_user AND k.key = p.answer_key AND k.state = 'processing' ) SELECT * FROM o;
