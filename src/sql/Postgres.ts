/**
 * PostgreSQL through `@effect/sql-pg`, for a registry shared by many instances (`AXON_DATABASE_URL`). The pool
 * is built here rather than by `PgClient.layer`, for what that layer does not expose: a statement time-out on
 * every query (enforced by the server, `statement_timeout`, and by the client, `query_timeout`, for a network
 * that stops answering), TCP keep-alive, a connection time-out, BIGINT read as a number (times are milliseconds),
 * and a listener for the pool's `error` event (an idle connection dropped by a restarting server would
 * otherwise crash the process). The connection URL is `Redacted` until the one line that opens the pool.
 *
 * Migrations run in one transaction holding a PostgreSQL advisory lock, so instances started together never
 * run one twice: the first takes the lock and migrates, the others wait for it and then find nothing to do.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as PgClient from "@effect/sql-pg/PgClient"
import * as PgMigrator from "@effect/sql-pg/PgMigrator"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import type * as Net from "node:net"
import * as Pg from "pg"
import * as Backoff from "../heartbeat/Backoff.js"

/** Options for `layer`. */
export interface PostgresOptions {
  /** `postgres://user:password@host:port/database`; the password never leaves the `Redacted`. */
  readonly url: Redacted.Redacted<string>
  /** Migrations by name (`"0001_create_x"`), run in order, each once, under the advisory lock. */
  readonly migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>>
  /** The longest any statement may run (default 5 s). */
  readonly statementTimeout?: Duration.DurationInput
  /** Connections in the pool (default 10). */
  readonly maxConnections?: number
}

/** The statement time-out when none is given. */
export const DEFAULT_STATEMENT_TIMEOUT = Duration.seconds(5)

/** The advisory lock key of the migrations: any fixed 64-bit number, the same in every instance. */
const MIGRATION_LOCK = 7_014_202_614

const INT8_OID = 20

/**
 * A migrated PostgreSQL client. Provides `PgClient` and `SqlClient`. Waits for the database at start (capped
 * jittered backoff, logged), so an instance started before its database comes up instead of exiting.
 */
export const layer = (options: PostgresOptions): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient, SqlError> => {
  const timeoutMs = Duration.toMillis(options.statementTimeout ?? DEFAULT_STATEMENT_TIMEOUT)
  const acquire = Effect.acquireRelease(
    Effect.sync(() => {
      const pool = new Pg.Pool({
        connectionString: Redacted.value(options.url),
        max: options.maxConnections ?? 10,
        statement_timeout: timeoutMs,
        // The client gives up a little after the server would have: a partitioned network never answers.
        query_timeout: timeoutMs + 1_000,
        connectionTimeoutMillis: Math.min(timeoutMs, 5_000),
        keepAlive: true,
        // Connections outlive a quiet spell longer than the sweep period (30 s by default), and two are always
        // kept: a new connection is a new PostgreSQL backend, whose first scan of `neurons` costs about 100 ms
        // more than the same scan on a backend that has run it (it maps the shared buffers page by page;
        // BENCHMARKS.md, "Issue 14, session 6"). With the old 30 s a sweep could land on a fresh backend each time.
        idleTimeoutMillis: 120_000,
        min: 2,
        application_name: "axon-registry",
        types: {
          getTypeParser: ((oid: number, format?: "text" | "binary") =>
            oid === INT8_OID ? Number : Pg.types.getTypeParser(oid, format as "text")) as never
        }
      })
      // A connection lost while idle is dropped from the pool; the next query opens a new one.
      pool.on("error", () => {})
      pool.on("connect", (client) => dropWhenSilent(client, timeoutMs + 2_000))
      return pool
    }),
    (pool) => Effect.promise(() => pool.end()).pipe(Effect.timeoutOption(1_000))
  )
  const connect = Effect.tryPromise({
    try: () => {
      // The pool is built inside `fromPool`; this checks the database answers before anything else starts.
      const probe = new Pg.Client({
        connectionString: Redacted.value(options.url),
        connectionTimeoutMillis: 5_000
      })
      probe.on("error", () => {})
      return probe.connect().then(() => probe.end(), (error) => probe.end().then(() => Promise.reject(error)))
    },
    catch: (cause) => new SqlError({ cause, message: "could not connect to PostgreSQL" })
  }).pipe(
    Effect.tapError((error) =>
      Effect.logWarning("database not reachable yet; retrying").pipe(
        Effect.annotateLogs({ reason: describeSqlError(error) })
      )
    ),
    Effect.retry(
      Backoff.backoff({ base: "100 millis", ceiling: "5 seconds" }).pipe(
        Schedule.compose(Schedule.recurs(60))
      )
    )
  )
  const client = Layer.unwrapEffect(Effect.as(connect, PgClient.layerFromPool({ acquire })))
  const migrate = Layer.effectDiscard(
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql.withTransaction(Effect.gen(function*() {
        yield* sql`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`
        // The Migrator creates its table with a check that fails inside a transaction when the table is missing:
        // create it first (the Migrator's own definition), under the lock.
        yield* sql`CREATE TABLE IF NOT EXISTS effect_sql_migrations (
        migration_id integer primary key,
        created_at timestamp with time zone not null default now(),
        name text not null
      )`
        yield* PgMigrator.run({ loader: Migrator.fromRecord(options.migrations) })
      }))
    }).pipe(
      Effect.mapError((error) =>
        error._tag === "SqlError"
          ? error
          : new SqlError({ cause: error, message: `migration failed: ${error.message}` })
      ),
      Effect.provide(NodeContext.layer)
    )
  )
  return migrate.pipe(Layer.provideMerge(client))
}

/**
 * Closes a pooled connection that stays silent for `silenceMs` while a statement waits for its answer. The server
 * answers every statement within the statement time-out (it cancels it otherwise), so such silence means the
 * server is gone without a reset: the host of a primary that failed over to its standby, a partition. The driver's
 * `query_timeout` fails the statement but keeps the connection, and the next statement on it waits behind the lost
 * one, for as long as the kernel keeps the socket (about 15 minutes): measured, an instance answered `503` for
 * minutes after a failover although the new primary was reachable. Closed, the connection leaves the pool, and the
 * next statement opens a new one to wherever the address now leads.
 */
const dropWhenSilent = (client: Pg.PoolClient, silenceMs: number) => {
  const driver = client as unknown as {
    readonly connection: { readonly stream: Net.Socket }
    readonly _getActiveQuery: () => unknown
  }
  const socket = driver.connection.stream
  socket.setTimeout(silenceMs)
  socket.on("timeout", () => {
    // An idle connection is silent too: only one with a statement outstanding is lost.
    if (driver._getActiveQuery() != null) socket.destroy(new Error("no answer from PostgreSQL: connection closed"))
  })
}

/** SQLSTATE classes that mean "the database cannot serve now", not "this statement is wrong". */
const UNAVAILABLE_CLASSES = new Set(["08", "53", "57", "58"])

/**
 * True when a failed statement says the database is out of reach (connection refused or lost, server shutting
 * down or starting, too many connections, a statement time-out), rather than that the statement itself is wrong.
 */
export const isUnavailable = (error: SqlError): boolean => {
  const cause = error.cause as { readonly code?: unknown; readonly message?: unknown } | undefined
  const code = typeof cause?.code === "string" ? cause.code : undefined
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) return UNAVAILABLE_CLASSES.has(code.slice(0, 2))
  // No SQLSTATE: the socket failed (ECONNREFUSED, ECONNRESET, "Connection terminated", a client time-out).
  return true
}

/** A failed statement in a log line: the driver's message and SQLSTATE, never the connection string. */
export const describeSqlError = (error: SqlError): string => {
  const cause = error.cause as { readonly code?: unknown; readonly message?: unknown } | undefined
  const detail = typeof cause?.message === "string" ? cause.message : String(cause)
  const code = typeof cause?.code === "string" ? ` (${cause.code})` : ""
  return `${error.message}: ${detail}${code}`.slice(0, 300)
}
