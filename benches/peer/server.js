// The seed's approach, as benches/http_peer.rs measures it against `meterline serve`: a small
// Node + drizzle service on the same PostgreSQL, one transaction per event. It keeps its own
// tables (peer_*), so it can share a database with nothing else.
//
//   POST /v1/events                 {"customer", "key", "quantity"?}: the event inserted ON
//                                   CONFLICT on its key, the customer's counter for the period
//                                   bumped unless that passes the customer's limit (402); a
//                                   duplicate answers the counter's standing.
//   GET  /v1/customers/{id}/check   the counter and the limit.
//   POST /v1/reservations           {"customer", "amount", "key"}: the customer's balance row
//                                   locked (SELECT … FOR UPDATE), its live holds summed, the
//                                   hold inserted if the rest covers it (402 otherwise).
//   POST /v1/reservations/{id}/settle {"amount"}: the hold deleted, the amount taken from the
//                                   balance and the event inserted, in one transaction.
//
// Environment: DATABASE_URL, PEER_PORT (0: any free port), PEER_POOL (connections, default 16).
// It prints "peer: listening on http://127.0.0.1:PORT" once ready.

import http from "node:http";
import pg from "pg";
import { drizzle } from "drizzle-orm/node-postgres";
import { pgTable, text, bigint, bigserial, primaryKey } from "drizzle-orm/pg-core";
import { and, eq, sql } from "drizzle-orm";

const customers = pgTable("peer_customers", {
  id: text("id").primaryKey(),
  // NULL: unlimited.
  limit: bigint("usage_limit", { mode: "number" }),
});

const events = pgTable("peer_events", {
  id: bigserial("id", { mode: "number" }).primaryKey(),
  key: text("key").notNull().unique(),
  customerId: text("customer_id").notNull(),
  period: text("period").notNull(),
  quantity: bigint("quantity", { mode: "number" }).notNull(),
});

const counters = pgTable(
  "peer_counters",
  {
    customerId: text("customer_id").notNull(),
    period: text("period").notNull(),
    used: bigint("used", { mode: "number" }).notNull(),
  },
  (t) => [primaryKey({ columns: [t.customerId, t.period] })],
);

const pool = new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.PEER_POOL ?? 16),
});
const db = drizzle(pool);

await pool.query(`
  CREATE TABLE IF NOT EXISTS peer_customers (id TEXT PRIMARY KEY, usage_limit BIGINT);
  CREATE TABLE IF NOT EXISTS peer_events (
    id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL,
    period TEXT NOT NULL, quantity BIGINT NOT NULL);
  CREATE TABLE IF NOT EXISTS peer_counters (
    customer_id TEXT NOT NULL, period TEXT NOT NULL, used BIGINT NOT NULL,
    PRIMARY KEY (customer_id, period));
  CREATE TABLE IF NOT EXISTS peer_balances (customer_id TEXT PRIMARY KEY, balance NUMERIC NOT NULL);
  CREATE TABLE IF NOT EXISTS peer_holds (
    id BIGSERIAL PRIMARY KEY, key TEXT NOT NULL UNIQUE, customer_id TEXT NOT NULL,
    amount NUMERIC NOT NULL, expires_at TIMESTAMPTZ NOT NULL);
`);

/** The billing period: the calendar month, as a seed-style service keeps it. */
const periodOf = (date) => date.toISOString().slice(0, 7);

class Refused extends Error {}

function standing(customer, used, limit) {
  return { customer, used, limit, allowed: limit === null || used < limit };
}

async function counterOf(q, customer, period) {
  const [row] = await q
    .select({ used: counters.used, limit: customers.limit })
    .from(customers)
    .leftJoin(counters, and(eq(counters.customerId, customers.id), eq(counters.period, period)))
    .where(eq(customers.id, customer));
  return row;
}

async function record(body) {
  const quantity = body.quantity ?? 1;
  const period = periodOf(new Date());
  try {
    return await db.transaction(async (tx) => {
      const inserted = await tx
        .insert(events)
        .values({ key: body.key, customerId: body.customer, period, quantity })
        .onConflictDoNothing({ target: events.key })
        .returning({ id: events.id });
      if (inserted.length === 0) {
        const row = await counterOf(tx, body.customer, period);
        return [200, { ...standing(body.customer, row?.used ?? 0, row?.limit ?? null), recorded: false, duplicate: true }];
      }
      const [customer] = await tx
        .select({ limit: customers.limit })
        .from(customers)
        .where(eq(customers.id, body.customer));
      if (!customer) throw new Refused(JSON.stringify([404, { error: "unknown customer" }]));
      const [counter] = await tx
        .insert(counters)
        .values({ customerId: body.customer, period, used: quantity })
        .onConflictDoUpdate({
          target: [counters.customerId, counters.period],
          set: { used: sql`${counters.used} + ${quantity}` },
        })
        .returning({ used: counters.used });
      if (customer.limit !== null && counter.used > customer.limit) {
        // Rolls back the event and the bump.
        const answer = standing(body.customer, counter.used - quantity, customer.limit);
        throw new Refused(JSON.stringify([402, { ...answer, recorded: false, duplicate: false }]));
      }
      return [200, { ...standing(body.customer, counter.used, customer.limit), recorded: true, duplicate: false, event_id: inserted[0].id }];
    });
  } catch (e) {
    if (e instanceof Refused) return JSON.parse(e.message);
    throw e;
  }
}

async function check(customer) {
  const row = await counterOf(db, customer, periodOf(new Date()));
  if (!row) return [404, { error: "unknown customer" }];
  return [200, standing(customer, row.used ?? 0, row.limit)];
}

async function reserve(body) {
  try {
    return await db.transaction(async (tx) => {
      const { rows: [row] } = await tx.execute(
        sql`SELECT balance FROM peer_balances WHERE customer_id = ${body.customer} FOR UPDATE`);
      if (!row) throw new Refused(JSON.stringify([404, { error: "unknown customer" }]));
      const { rows: [held] } = await tx.execute(
        sql`SELECT COALESCE(SUM(amount), 0) AS held FROM peer_holds
            WHERE customer_id = ${body.customer} AND expires_at > now()`);
      if (Number(row.balance) - Number(held.held) < body.amount) {
        throw new Refused(JSON.stringify([402, { error: "insufficient credits" }]));
      }
      const { rows: [hold] } = await tx.execute(
        sql`INSERT INTO peer_holds (key, customer_id, amount, expires_at)
            VALUES (${body.key}, ${body.customer}, ${body.amount}, now() + interval '10 minutes')
            RETURNING id`);
      return [201, { id: String(hold.id) }];
    });
  } catch (e) {
    if (e instanceof Refused) return JSON.parse(e.message);
    throw e;
  }
}

async function settle(id, body) {
  return db.transaction(async (tx) => {
    const { rows: [hold] } = await tx.execute(
      sql`DELETE FROM peer_holds WHERE id = ${id} RETURNING customer_id, key`);
    if (!hold) return [404, { error: "unknown reservation" }];
    await tx.execute(
      sql`UPDATE peer_balances SET balance = balance - ${body.amount}
          WHERE customer_id = ${hold.customer_id}`);
    await tx
      .insert(events)
      .values({ key: hold.key, customerId: hold.customer_id, period: periodOf(new Date()), quantity: body.amount });
    return [200, { recorded: true }];
  });
}

async function route(req, body) {
  if (req.method === "POST" && req.url === "/v1/events") return record(JSON.parse(body));
  if (req.method === "POST" && req.url === "/v1/reservations") return reserve(JSON.parse(body));
  const s = req.method === "POST" && req.url.match(/^\/v1\/reservations\/([^/?]+)\/settle$/);
  if (s) return settle(decodeURIComponent(s[1]), JSON.parse(body));
  const m = req.method === "GET" && req.url.match(/^\/v1\/customers\/([^/?]+)\/check$/);
  if (m) return check(decodeURIComponent(m[1]));
  return [404, { error: "not found" }];
}

const server = http.createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", () => {
    route(req, body)
      .catch((e) => [500, { error: String(e) }])
      .then(([status, answer]) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(answer));
      });
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PEER_PORT ?? 0), "127.0.0.1", () => {
  console.error(`peer: listening on http://127.0.0.1:${server.address().port}`);
});
