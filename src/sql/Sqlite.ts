/**
 * SQLite for both the registry and the Neuron: `@effect/sql-sqlite-node` with WAL (the driver's default),
 * `synchronous = FULL` set explicitly (the driver leaves the build default, NORMAL once a WAL file is reopened,
 * which can lose an acknowledged write on power failure), a busy timeout, foreign keys, and migrations
 * run through the Migrator before anyone uses the client.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as FileSystem from "@effect/platform/FileSystem"
import * as Path from "@effect/platform/Path"
import * as SqliteClient from "@effect/sql-sqlite-node/SqliteClient"
import * as SqliteMigrator from "@effect/sql-sqlite-node/SqliteMigrator"
import * as Migrator from "@effect/sql/Migrator"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"

/** Options for `layer`. */
export interface SqliteOptions {
  /** The database file; its folder is created when missing. */
  readonly filename: string
  /** Migrations by name (`"0001_create_x"`), run in order, each once. */
  readonly migrations: Record<string, Effect.Effect<void, unknown, SqlClient.SqlClient>>
}

/** Applies the connection settings the project relies on. The Node client has exactly one connection. */
const configure = Effect.gen(function*() {
  const sql = yield* SqlClient.SqlClient
  yield* sql`PRAGMA synchronous = FULL`
  yield* sql`PRAGMA foreign_keys = ON`
  yield* sql`PRAGMA busy_timeout = 5000`
})

/**
 * A migrated SQLite client on `filename`. Provides both `SqlClient` and `SqliteClient`.
 * Uses the platform's FileSystem only to create the folder, so it needs no Node layer from its host.
 */
export const layer = (options: SqliteOptions) => {
  const client = SqliteClient.layer({ filename: options.filename })
  const setup = Layer.effectDiscard(configure)
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
 * connection, held for the whole transaction, with the statements of `effect` run on it (through
 * `TransactionConnection`, as `withTransaction` provides it). The difference: `BEGIN`, `COMMIT` and `ROLLBACK` go
 * through the driver's prepared-statement cache (`withTransaction` prepares them anew every time), and no span
 * (the caller's work has its own when tracing is on). Inside another transaction it is that transaction's part.
 */
export const withPreparedTransaction =
  (sql: SqlClient.SqlClient) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E | SqlError, R> =>
    Effect.flatMap(
      Effect.serviceOption(SqlClient.TransactionConnection),
      (outer) =>
        Option.isSome(outer) ? effect : Effect.uninterruptibleMask((restore) =>
          Effect.scoped(
            Effect.flatMap(sql.reserve, (connection) =>
              Effect.zipRight(
                connection.executeRaw("BEGIN", []),
                Effect.flatMap(
                  Effect.exit(
                    Effect.provideService(restore(effect), SqlClient.TransactionConnection, [connection, 0] as const)
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
