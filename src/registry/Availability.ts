/**
 * Whether the registry's database can serve, and what a failed statement means for the request that ran it.
 *
 * SQLite is a file of this process: a failed statement is a fault (a defect, `500`), as it always was.
 * PostgreSQL is a server that can go away: a statement failing for want of the database (connection refused or
 * lost, server restarting, statement time-out) fails its request with `Unavailable` (`503 UNAVAILABLE`) and
 * marks the database down. While it is down, requests fail at once without queueing on the pool, and one probe
 * (`SELECT 1`) retries on a capped, fully jittered exponential backoff (100 ms up to 5 s) until the database
 * answers; then the registry serves again by itself.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Backoff from "../heartbeat/Backoff.js"
import { Unavailable } from "../protocol/AxonApi.js"
import { describeSqlError, isUnavailable } from "../sql/Postgres.js"

/** The database's availability, as requests see it. */
export interface AvailabilityShape {
  /** Runs a statement (or a few): a database out of reach becomes `Unavailable`, anything else a defect. */
  readonly guard: <A, E, R>(
    effect: Effect.Effect<A, E | SqlError, R>
  ) => Effect.Effect<A, Exclude<E, SqlError> | Unavailable, R>
  /** Fails with `Unavailable` while the database is known to be down. */
  readonly check: Effect.Effect<void, Unavailable>
}

/** The database's availability. */
export class Availability extends Context.Tag("neuron/registry/Availability")<Availability, AvailabilityShape>() {
  /** SQLite: the file is always there; a failed statement is a defect. */
  static readonly layerSqlite = Layer.succeed(Availability, {
    guard: (effect) => Effect.catchIf(effect, isSqlError, Effect.die) as never,
    check: Effect.void
  })

  /** PostgreSQL: `503` while the database is out of reach, and a backoff probe until it is back. */
  static readonly layerPg = Layer.scoped(
    Availability,
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const scope = yield* Effect.scope
      let down = false
      const unavailable = new Unavailable({ message: "the registry's database is unreachable; try again shortly" })

      const probe = sql`SELECT 1`.pipe(
        Effect.retry(Backoff.backoff({ base: "100 millis", ceiling: "5 seconds" })),
        Effect.zipRight(Effect.sync(() => (down = false))),
        Effect.zipRight(Effect.logInfo("database reachable again")),
        Effect.annotateLogs({ service: "Availability" })
      )

      const markDown = (error: SqlError) =>
        down
          ? Effect.void
          : Effect.suspend(() => {
            down = true
            return Effect.logError("database unreachable: answering 503 until it is back").pipe(
              Effect.annotateLogs({ service: "Availability", reason: describeSqlError(error) }),
              Effect.zipRight(Effect.forkIn(probe, scope))
            )
          })

      const check = Effect.suspend(() => (down ? Effect.fail(unavailable) : Effect.void))

      const guard = <A, E, R>(effect: Effect.Effect<A, E | SqlError, R>) =>
        Effect.zipRight(
          check,
          Effect.catchIf(
            effect,
            isSqlError,
            (error) =>
              isUnavailable(error) ? Effect.zipRight(markDown(error), Effect.fail(unavailable)) : Effect.die(error)
          )
        ) as Effect.Effect<A, Exclude<E, SqlError> | Unavailable, R>

      return { guard, check } satisfies AvailabilityShape
    })
  )
}

const isSqlError = (u: unknown): u is SqlError =>
  typeof u === "object" && u !== null && "_tag" in u && u._tag === "SqlError"
