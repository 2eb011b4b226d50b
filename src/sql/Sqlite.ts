/**
 * SQLite for both the registry and the Neuron: `@effect/sql-sqlite-node` with WAL (the driver's default),
 * `synchronous = FULL` set explicitly (the driver leaves the build default, NORMAL once a WAL file is reopened,
 * which can lose an acknowledged write on power failure), a busy timeout, foreign keys, and migrations
 * run through the Migrator before anyone uses the client.
 *
 * `writeTransaction` is how the Neuron writes: `BEGIN IMMEDIATE` (a deferred transaction that reads and then writes
 * fails at once when another process holds the lock), a short driver wait (better-sqlite3 is synchronous: while it
 * waits, the whole event loop waits), retried on a Schedule so that other fibers run between tries, and storage
 * failures (full, locked past the bound, I/O, read-only) as a typed `StorageUnavailable`.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import { identity } from "effect/Function"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import { classify, StorageUnavailable } from "./StorageUnavailable.js"

/** Options for `layer`. */
export interface SqliteOptions {
  /** The database file; its folder is created when missing. */
  readonly filename: string
  /** Migrations by name (`"0001_create_x"`), run in order, each once. */
  readonly migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>>
  /**
   * How long the driver itself waits for another process's lock, blocking the event loop meanwhile. Default 5 s;
   * the Neuron sets `SHORT_BUSY_TIMEOUT` and waits in `writeTransaction` instead.
   */
  readonly busyTimeout?: Duration.DurationInput
}

/** The driver's own wait for a lock when writes go through `writeTransaction`: short, the event loop waits it out. */
export const SHORT_BUSY_TIMEOUT = Duration.millis(50)

/** How long `writeTransaction` keeps trying while another process holds the write lock, before `locked`. */
export const LOCK_WAIT = Duration.seconds(3)

/** Applies the connection settings the project relies on. The Node client has exactly one connection. */
const configure = (busyTimeout: Duration.Duration) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    yield* sql`PRAGMA synchronous = FULL`
    yield* sql`PRAGMA foreign_keys = ON`
    yield* sql.unsafe(`PRAGMA busy_timeout = ${Math.round(Duration.toMillis(busyTimeout))}`)
  })

/**
 * A migrated SQLite client on `filename`. Provides both `SqlClient` and `SqliteClient`.
 * Uses the platform's FileSystem only to create the folder, so it needs no Node layer from its host.
 */
export const layer = (options: SqliteOptions) => {
  const client = SqliteClient.layer({ filename: options.filename })
  const setup = Layer.effectDiscard(configure(Duration.decode(options.busyTimeout ?? Duration.seconds(5))))
  const migrate = SqliteMigrator.layer({ loader: Migrator.fromRecord(options.migrations) })
  const mkdir = Layer.effectDiscard(
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      yield* fs.makeDirectory(path.dirname(options.filename), { recursive: true })
    }).pipe(Effect.orDie)
  )
  return Layer.mergeAll(migrate, setup).pipe(
    Layer.provideMerge(client),
    Layer.provide(mkdir),
    Layer.provide(NodeContext.layer)
  )
}

/**
 * A fresh temporary folder, removed with its contents when the scope closes. For tests and benchmarks
 * that want real files: `Effect.flatMap(makeTempDir(), (dir) => ...)`.
 */
export const makeTempDir = (prefix = "neuron-"): Effect.Effect<string, never, Scope.Scope> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    return yield* fs.makeTempDirectoryScoped({ prefix })
  }).pipe(Effect.orDie, Effect.provide(NodeContext.layer))

/**
 * `sql.withTransaction` for a hot path: the same BEGIN / COMMIT (ROLLBACK on failure) on the client's one
 * connection, held for the whole transaction and handed to `body`, which runs its statements on it directly
 * (`connection.execute`: the driver's prepared-statement cache, without the Statement compiler, the connection
 * lookup and the span of each `sql` statement: about 60 % of the handshake's Effect operations before; see
 * BENCHMARKS.md, issue 11). Statements written with `sql` inside `body` still run on it (it is provided as
 * `TransactionConnection`, as `withTransaction` does). `BEGIN`, `COMMIT` and `ROLLBACK` go through the prepared
 * cache too, and there is no span (the caller's work has its own when tracing is on). Inside another
 * transaction it is that transaction's part, on its connection.
 */
export const withPreparedTransaction =
  (sql: SqlClient.SqlClient) =>
  <A, E, R>(body: (connection: Connection) => Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
    Effect.flatMap(
      Effect.serviceOption(SqlClient.TransactionConnection),
      (outer) =>
        Option.isSome(outer) ? body(outer.value[0]) : Effect.uninterruptibleMask((restore) =>
          Effect.scoped(
            Effect.flatMap(sql.reserve, (connection) =>
              Effect.zipRight(
                // IMMEDIATE: a transaction that writes takes the lock first (TRAPS.md), prepared all the same.
                connection.executeRaw("BEGIN IMMEDIATE", []),
                Effect.flatMap(
                  Effect.exit(
                    Effect.provideService(
                      restore(body(connection)),
                      SqlClient.TransactionConnection,
                      [connection, 0] as const
                    )
                  ),
                  (exit) =>
                    Effect.zipRight(
                      Effect.orDie(connection.executeRaw(Exit.isSuccess(exit) ? "COMMIT" : "ROLLBACK", [])),
                      exit
                    )
                )
              ))
          )
        )
    )
// A ROLLBACK after SQLite has already rolled the transaction back (it may, on SQLITE_FULL or an I/O error) fails
// with "no transaction is active": the transaction is over either way.
const rollbackQuietly = (conn: Connection) =>
  conn.executeUnprepared("ROLLBACK", [], undefined).pipe(
    Effect.catchIf(
      (e) => String((e.cause as Error | undefined)?.message).includes("no transaction"),
      () => Effect.void
    ),
    Effect.asVoid
  )

const immediateTransactions = new WeakMap<
  SqlClient.SqlClient,
  <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E | SqlError, R>
>()

/** `sql.withTransaction`, but `BEGIN IMMEDIATE`, and a failed COMMIT leaves no transaction open behind it. */
const immediateTransaction = (sql: SqlClient.SqlClient) => {
  let run = immediateTransactions.get(sql)
  if (run === undefined) {
    run = SqlClient.makeWithTransaction({
      transactionTag: SqlClient.TransactionConnection,
      spanAttributes: [["db.system.name", "sqlite"]],
      acquireConnection: Effect.flatMap(
        Scope.make(),
        (scope) => Effect.map(Scope.extend(sql.reserve, scope), (conn) => [scope, conn] as const)
      ),
      begin: (conn) => Effect.asVoid(conn.executeUnprepared("BEGIN IMMEDIATE", [], undefined)),
      savepoint: (conn, id) => Effect.asVoid(conn.executeUnprepared(`SAVEPOINT effect_sql_${id}`, [], undefined)),
      commit: (conn) =>
        conn.executeUnprepared("COMMIT", [], undefined).pipe(
          Effect.tapError(() => Effect.ignore(rollbackQuietly(conn))),
          Effect.asVoid
        ),
      rollback: rollbackQuietly,
      rollbackSavepoint: (conn, id) =>
        Effect.asVoid(conn.executeUnprepared(`ROLLBACK TO SAVEPOINT effect_sql_${id}`, [], undefined))
    })
    immediateTransactions.set(sql, run)
  }
  return run
}

// Between tries the lock holder may let go: 20-60 ms apart (jittered, so two waiting writers do not stay in step).
const lockRetry = Schedule.spaced(Duration.millis(40)).pipe(
  Schedule.jitteredWith({ min: 0.5, max: 1.5 }),
  Schedule.upTo(LOCK_WAIT)
)

const isLocked = (e: unknown) => e instanceof StorageUnavailable && e.reason === "locked"

/**
 * On `sql`: runs `effect` as one writing transaction (`BEGIN IMMEDIATE`; a savepoint inside another transaction). A storage
 * failure (disk or size limit full, I/O error, read-only file, a lock another process holds for longer than
 * `LOCK_WAIT`) is `StorageUnavailable` and nothing of `effect` is kept. While another process holds the lock the
 * whole transaction is tried again every few tens of milliseconds, so other fibers (`/health`) run meanwhile.
 * Other SQL errors stay `SqlError`.
 */
export const writeTransaction = (
  sql: SqlClient.SqlClient,
  options?: {
    /** false: one try only (the driver's short wait), for a write that may be skipped rather than wait. */
    readonly waitForLock?: boolean
  }
) =>
<A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError | StorageUnavailable, R> =>
  Effect.suspend(() =>
    immediateTransaction(sql)(effect).pipe(
      // The client turns a failed COMMIT into a defect: a full disk at commit is still a storage failure.
      Effect.catchSomeDefect((defect) => Option.map(classify(defect), (e) => Effect.fail(e))),
      Effect.mapError((e): E | SqlError | StorageUnavailable =>
        e instanceof SqlError ? Option.getOrElse(classify(e), () => e) : e
      ),
      options?.waitForLock === false ? identity : Effect.retry({ schedule: lockRetry, while: isLocked }),
      Effect.tapError((e) =>
        e instanceof StorageUnavailable
          ? Effect.logWarning("a write could not be stored").pipe(Effect.annotateLogs({ reason: e.reason }))
          : Effect.void
      )
    )
  )

// What an operator can act on, for the errors a folder gives most often; others keep Node's own text.
const folderProblems: Record<string, string> = {
  ENOTDIR: "a part of its path is a file, not a folder",
  ENOENT: "its path cannot be made (a parent folder is missing and cannot be created, or is read-only)",
  EEXIST: "it is a file, not a folder",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "it is on a read-only file system",
  ENOSPC: "no space left on its device",
  EDQUOT: "the disk quota is exhausted"
}

/**
 * Makes `dir` when missing and proves it writable (a probe file created, synced and removed): the one check at
 * start that turns "cannot write the data folder" into one clear line instead of a failure deep in SQLite.
 */
export const ensureWritableFolder = (dir: string): Effect.Effect<void, StorageUnavailable> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    yield* fs.makeDirectory(dir, { recursive: true })
    const probe = path.join(dir, `.write-probe.${process.pid}`)
    yield* Effect.scoped(Effect.gen(function*() {
      const file = yield* fs.open(probe, { flag: "w" })
      yield* file.writeAll(new Uint8Array([10]))
      yield* file.sync
    })).pipe(Effect.ensuring(Effect.ignore(fs.remove(probe))))
  }).pipe(
    Effect.mapError((e) => {
      const code = e._tag === "SystemError" ? (e.cause as { code?: unknown } | undefined)?.code : undefined
      const why = typeof code === "string" && code in folderProblems
        ? `${folderProblems[code]} (${code})`
        : e.message
      return new StorageUnavailable({
        reason: "folder_unwritable",
        message: `the data folder ${dir} cannot be written: ${why}`
      })
    }),
    Effect.provide(NodeContext.layer)
  )
