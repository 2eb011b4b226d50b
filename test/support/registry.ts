/**
 * Starts the real Axon registry (its Layer, a real SQLite file or a real PostgreSQL database, its own HTTP server
 * on 127.0.0.1, port 0) for a test, and stops it when the test's scope closes. The Neuron's tests point their
 * Axon client at `url`. The registry's contract suite runs once per store (`STORES`).
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpServer from "@effect/platform/HttpServer"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { createServer } from "node:http"
import * as AxonRegistry from "../../src/registry/AxonRegistry.js"
import { HeartbeatMonitor } from "../../src/registry/HeartbeatMonitor.js"
import { RegistryStore } from "../../src/registry/RegistryStore.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { freshDatabase } from "./postgres.js"

/** The registry's two stores: every contract test runs against both. */
export const STORES = ["sqlite", "postgres"] as const

/** One of `STORES`. */
export type Store = (typeof STORES)[number]

/** Options of `startRegistry`. */
export interface StartRegistryOptions {
  /** Reuse a folder (e.g. to restart a registry on the same data); a fresh temporary one when absent. */
  readonly dataDir?: string
  /** Enables enrollment (registering needs it; re-registering rotates the token). */
  readonly enrollmentToken?: string
  /** SQLite (the default) or PostgreSQL (a fresh database on the run's server, unless `databaseUrl` is given). */
  readonly store?: Store
  /** Reuse a PostgreSQL database (e.g. to restart a registry on the same data, or a second instance). */
  readonly databaseUrl?: string
}

/** The registry's options for a test: a temporary folder, and a fresh PostgreSQL database when asked for. */
const optionsFor = (options: StartRegistryOptions | undefined) =>
  Effect.gen(function*() {
    const dataDir = options?.dataDir ?? (yield* Sqlite.makeTempDir("axon-"))
    const databaseUrl = options?.databaseUrl ??
      (options?.store === "postgres" ? yield* freshDatabase() : undefined)
    return {
      dataDir,
      databaseUrl,
      registry: {
        dataDir,
        enrollmentToken: Option.map(Option.fromNullable(options?.enrollmentToken), Redacted.make),
        databaseUrl: Option.map(Option.fromNullable(databaseUrl), Redacted.make)
      }
    }
  })

/** The registry's server layer on 127.0.0.1, port 0. */
export const serverLayer = NodeHttpServer.layer(createServer, { port: 0, host: "127.0.0.1" })

/** The base URL of a server from its address. */
export const urlOf = (server: HttpServer.HttpServer): string => {
  const address = server.address
  return address._tag === "TcpAddress" ? `http://127.0.0.1:${address.port}` : `http://unix:${address.path}`
}

/**
 * Like `startRegistry`, and also hands back the registry's services (monitor, store, SQL client) so the
 * registry's own tests can wait for a sweep and look at the database.
 */
export const startRegistryWithServices = (options?: StartRegistryOptions) =>
  Effect.gen(function*() {
    const { dataDir, databaseUrl, registry } = yield* optionsFor(options)
    const context = yield* Layer.build(
      AxonRegistry.layerWithServices(registry).pipe(Layer.provideMerge(serverLayer))
    )
    return {
      url: urlOf(Context.get(context, HttpServer.HttpServer)),
      dataDir,
      databaseUrl,
      monitor: Context.get(context, HeartbeatMonitor),
      store: Context.get(context, RegistryStore),
      sql: Context.get(context, SqlClient.SqlClient)
    }
  }).pipe(Effect.orDie)

/** Starts a real registry for the length of the current scope. */
export const startRegistry = (
  options?: StartRegistryOptions
): Effect.Effect<
  { readonly url: string; readonly dataDir: string; readonly databaseUrl: string | undefined },
  never,
  Scope.Scope
> =>
  Effect.gen(function*() {
    const { dataDir, databaseUrl, registry } = yield* optionsFor(options)
    const context = yield* Layer.build(AxonRegistry.layer(registry).pipe(Layer.provideMerge(serverLayer)))
    return { url: urlOf(Context.get(context, HttpServer.HttpServer)), dataDir, databaseUrl }
  }).pipe(Effect.orDie)

/**
 * Makes the registry's TTL expire one neuron now: its last heartbeat is set more than three intervals back
 * (by the registry's own clock) and sweeps run until the registry has deregistered it.
 */
export const expireByTtl = (
  registry: Effect.Effect.Success<ReturnType<typeof startRegistryWithServices>>,
  registrationId: string
) =>
  Effect.gen(function*() {
    const { sql, store } = registry
    const statusOf = Effect.map(store.get(registrationId), (entry) => entry?.status)
    if ((yield* statusOf) === undefined) {
      return yield* Effect.dieMessage(`no registration ${registrationId} in the registry`)
    }
    for (let round = 0; round < 100 && (yield* statusOf) !== "deregistered"; round++) {
      const silentSince = Date.now() - 10_000
      const entry = store.index?.get(registrationId)
      if (entry !== undefined) entry.lastHeartbeatMs = silentSince
      else {
        yield* sql`UPDATE neurons SET last_heartbeat_at = ${silentSince} WHERE registration_id = ${registrationId}`
      }
      yield* store.sweep(1_000)
    }
    if ((yield* statusOf) !== "deregistered") {
      return yield* Effect.dieMessage("the registry did not deregister the neuron")
    }
  })

/**
 * The database of a registry that a test restarts: for PostgreSQL a fresh database made in the caller's scope (so
 * that it outlives the first registry), for SQLite nothing (the data folder is the database).
 */
export const databaseFor = (
  store: Store
): Effect.Effect<{ readonly store: Store; readonly databaseUrl?: string }, never, Scope.Scope> =>
  store === "postgres"
    ? Effect.map(freshDatabase(), (databaseUrl) => ({ store, databaseUrl }))
    : Effect.succeed({ store })

/**
 * Moves the test clock to `ms` and waits until the registry has finished the sweep due then. On PostgreSQL a
 * sweep waits for real I/O, and the monitor may plan its next wait after the test clock has already moved past
 * it: setting the clock to the same time again (every 20 ms of real time) wakes what is due, until the sweep ran.
 */
export const sweepAt = (
  monitor: { readonly awaitSweep: (atMs: number) => Effect.Effect<void> },
  ms: number
): Effect.Effect<void> =>
  Effect.gen(function*() {
    yield* TestClock.setTime(ms)
    const nudge = Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, 20))).pipe(
      Effect.zipRight(TestClock.setTime(ms)),
      Effect.forever
    )
    yield* Effect.raceFirst(monitor.awaitSweep(ms), nudge)
  })
