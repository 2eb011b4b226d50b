/**
 * PostgreSQL for a test: `freshDatabase` makes a database on the run's shared server (vitest global setup,
 * `postgresGlobal.ts`) for the length of the test's scope; `scopedServer` starts a server of the test's own (for
 * tests that stop and start it).
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { inject } from "vitest"
import { createDatabase, dropDatabase, PG_USER, type PostgresServer, startPostgresServer } from "./postgresServer.js"

/** The run's shared server. */
export const sharedServer = (): Pick<PostgresServer, "urlFor" | "password"> => {
  const { password, port } = inject("postgres")
  return { password, urlFor: (database) => `postgres://${PG_USER}:${password}@127.0.0.1:${port}/${database}` }
}

/** A fresh database on `server` (the shared one by default), dropped when the scope closes; its URL. */
export const freshDatabase = (
  server: Pick<PostgresServer, "urlFor"> = sharedServer()
): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => createDatabase(server)),
    (url) => Effect.promise(() => dropDatabase(server, url).catch(() => {}))
  )

/** A server of the test's own, removed when the scope closes. */
export const scopedServer: Effect.Effect<PostgresServer, never, Scope.Scope> = Effect.acquireRelease(
  Effect.promise(() => startPostgresServer()),
  (server) => Effect.promise(() => server.destroy())
)
