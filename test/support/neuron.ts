/**
 * Starts a whole Neuron (`Neuron.layer`: registration engine, heartbeat, store, handshake and local HTTP API) for a
 * test, the way a host program would: its own HTTP server on 127.0.0.1 port 0, Node's HTTP client towards the
 * registry, SQLite on `<data dir>/neuron.db`. Plus what the Neuron's tests look at: the health file, the event log
 * and audit chain (read through a second SQLite connection), a free port, a registry on a chosen port, a plain
 * HTTP caller, a log capture and a bounded poll.
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as HttpServer from "@effect/platform/HttpServer"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { defaults, NeuronConfig, type NeuronSettings } from "../../src/config/NeuronConfig.js"
import type { Npi } from "../../src/domain/Npi.js"
import { HEALTH_FILE } from "../../src/health/NeuronHealth.js"
import * as NodeServer from "../../src/http/NodeServer.js"
import * as Neuron from "../../src/Neuron.js"
import * as AxonRegistry from "../../src/registry/AxonRegistry.js"
import { HeartbeatMonitor } from "../../src/registry/HeartbeatMonitor.js"
import { RegistryStore } from "../../src/registry/RegistryStore.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog, type AuditVerification } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"
import { call, npiOf } from "./http.js"
import { startRegistry } from "./registry.js"

export { call, freePort, npiOf } from "./http.js"

/** The clinic most tests run. */
export const CLINIC = { npi: npiOf(700), name: "Riverside Family Practice" } as const

type Timing = "heartbeatInterval" | "backoffBase" | "backoffCeiling" | "axonTimeout"

/** Settings a test changes; the durations in any form (`"50 millis"`). */
export type TestOverrides =
  & Omit<Partial<NeuronSettings>, Timing>
  & { readonly [K in Timing]?: Duration.DurationInput }

/** Settings for a test Neuron: the defaults, this registry list and organization, and `overrides`. */
export const testSettings = (options: {
  readonly dataDir: string
  readonly registryUrls: ReadonlyArray<string>
  readonly organization?: { readonly npi: Npi; readonly name: string }
  readonly overrides?: TestOverrides
}): NeuronSettings => {
  const { axonTimeout, backoffBase, backoffCeiling, heartbeatInterval, ...rest } = options.overrides ?? {}
  const base = defaults()
  const duration = (input: Duration.DurationInput | undefined, fallback: Duration.Duration) =>
    input === undefined ? fallback : Duration.decode(input)
  return {
    ...base,
    organization: Option.some(options.organization ?? CLINIC),
    dataDir: options.dataDir,
    registryUrls: options.registryUrls,
    // The registry checks only that it is an http(s) URL; the port is not known before the server listens.
    publicUrl: "https://neuron.riverside.test",
    ...rest,
    axonTimeout: duration(axonTimeout, Duration.seconds(5)),
    backoffBase: duration(backoffBase, base.backoffBase),
    backoffCeiling: duration(backoffCeiling, base.backoffCeiling),
    heartbeatInterval: duration(heartbeatInterval, base.heartbeatInterval)
  }
}

/** A running test Neuron. */
export interface RunningNeuron {
  /** `http://127.0.0.1:<port>`: the local API and the handshake. */
  readonly url: string
  readonly dataDir: string
  readonly settings: NeuronSettings
  /** The handle a host program gets. */
  readonly neuron: Neuron.NeuronService
  /** The Neuron's own SQLite connection (for tests that change its limits, such as `max_page_count`). */
  readonly sql: SqlClient.SqlClient
}

/** The server a test Neuron listens on (`host` 127.0.0.1 unless given), port 0: the same server `pnpm start` uses. */
const serverLayer = (host: string) => NodeServer.layer({ port: 0, host })

/**
 * Starts a Neuron for the length of the current scope: on a fresh temporary data folder unless `dataDir` is given
 * (a restart on the same folder), against `registryUrls`. Closing the scope stops it as SIGTERM would.
 */
export const startNeuron = (options: {
  readonly registryUrls: ReadonlyArray<string>
  readonly dataDir?: string
  readonly organization?: { readonly npi: Npi; readonly name: string }
  readonly overrides?: TestOverrides
  readonly host?: string
  /** A Layer built before the Neuron's and provided under it, as `src/main.ts` provides `Tracing.layer`. */
  readonly under?: Layer.Layer<never>
}): Effect.Effect<RunningNeuron, never, Scope.Scope> =>
  Effect.gen(function*() {
    const dataDir = options.dataDir ?? (yield* Sqlite.makeTempDir("neuron-"))
    const settings = testSettings({ ...options, dataDir })
    const context = yield* Layer.build(
      Neuron.layer.pipe(
        Layer.provideMerge(serverLayer(options.host ?? "127.0.0.1")),
        Layer.provideMerge(Neuron.layerSqlite),
        Layer.provide(NodeHttpClient.layerUndici),
        Layer.provide(NeuronConfig.layer(settings)),
        Layer.provide(NodeContext.layer),
        Layer.provide(options.under ?? Layer.empty)
      )
    )
    return {
      url: NodeServer.urlOf(Context.get(context, HttpServer.HttpServer)),
      dataDir,
      settings,
      neuron: Context.get(context, Neuron.Neuron),
      sql: Context.get(context, SqlClient.SqlClient)
    }
  }).pipe(Effect.orDie)

/** A scope inside the current one: closed early by the test (a stop), or with the test at the latest. */
export const childScope: Effect.Effect<Scope.CloseableScope, never, Scope.Scope> = Effect.flatMap(
  Effect.scope,
  (scope) => Scope.fork(scope, ExecutionStrategy.sequential)
)

/** The real registry on a chosen port (127.0.0.1), with its services, for the length of the current scope. */
export const startRegistryOn = (port: number, options?: { readonly dataDir?: string }) =>
  Effect.gen(function*() {
    const dataDir = options?.dataDir ?? (yield* Sqlite.makeTempDir("axon-"))
    const context = yield* Layer.build(
      AxonRegistry.layerWithServices({ dataDir, enrollmentToken: Option.none() }).pipe(
        Layer.provideMerge(NodeServer.layer({ port, host: "127.0.0.1" }))
      )
    )
    return {
      url: `http://127.0.0.1:${port}`,
      dataDir,
      monitor: Context.get(context, HeartbeatMonitor),
      store: Context.get(context, RegistryStore),
      sql: Context.get(context, SqlClient.SqlClient)
    }
  }).pipe(Effect.orDie)

/** Waits in real time (whatever the fiber's Clock is): for polls inside `TestClock` tests too. */
export const realSleep = (ms: number): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), ms)
    return Effect.sync(() => clearTimeout(timer))
  })

/**
 * Polls `check` every 20 ms of real time until it gives a value, for at most `timeoutMs` (default 10 s); dies
 * with `what` when it never does. Waiting for a condition, not timing anything.
 */
export const waitFor = <A, E, R>(
  what: string,
  check: Effect.Effect<Option.Option<A>, E, R>,
  timeoutMs = 10_000
): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    const deadline = Date.now() + timeoutMs
    while (true) {
      const result = yield* check
      if (Option.isSome(result)) return result.value
      if (Date.now() > deadline) return yield* Effect.dieMessage(`timed out waiting for: ${what}`)
      yield* realSleep(20)
    }
  })

/** `waitFor` on a predicate. */
export const waitUntil = <E, R>(what: string, check: Effect.Effect<boolean, E, R>, timeoutMs?: number) =>
  waitFor(what, Effect.map(check, (ok) => (ok ? Option.some(true) : Option.none())), timeoutMs)

/** Waits until the Neuron's `/health` says healthy: registered, and its heartbeat answered. */
export const untilHealthy = (url: string) =>
  waitUntil("the Neuron to be healthy", Effect.map(call(url, "GET", "/health"), (a) => a.body?.status === "healthy"))

/** Options of `neuronWithToken`. */
export interface NeuronWithTokenOptions {
  /** The admin token its admin API requires (each test file has its own, so that a leak is found by name). */
  readonly token: string
  readonly overrides?: TestOverrides
  /** Enrollment on: the registry requires this token and the Neuron sends it. */
  readonly enrollmentToken?: string
  /** Wait until `/health` says healthy before returning (the default), or return as soon as it is started. */
  readonly healthy?: boolean
  /** The scope the registry lives in, for a test that stops it early (`childScope`); the current one otherwise. */
  readonly registryScope?: Scope.Scope
}

/** A real registry and a Neuron against it with an admin token, healthy (unless asked not to wait). */
export const neuronWithToken = (options: NeuronWithTokenOptions) =>
  Effect.gen(function*() {
    const starting = startRegistry(
      options.enrollmentToken === undefined ? undefined : { enrollmentToken: options.enrollmentToken }
    )
    const registry = yield* (options.registryScope === undefined
      ? starting
      : Scope.extend(starting, options.registryScope))
    const neuron = yield* startNeuron({
      registryUrls: [registry.url],
      overrides: {
        adminToken: Option.some(Redacted.make(options.token)),
        ...(options.enrollmentToken === undefined
          ? {}
          : { enrollmentToken: Option.some(Redacted.make(options.enrollmentToken)) }),
        ...options.overrides
      }
    })
    if (options.healthy !== false) yield* untilHealthy(neuron.url)
    return { registry, neuron }
  })

/** The health file, parsed (`null` when absent). */
export const readHealthFile = (dataDir: string): Effect.Effect<any> =>
  Effect.sync(() => {
    const file = Path.join(dataDir, HEALTH_FILE)
    return Fs.existsSync(file) ? JSON.parse(Fs.readFileSync(file, "utf8")) : null
  })

/** What the Neuron has written in `neuron.db`. */
export interface Records {
  /** Event types in order. */
  readonly events: ReadonlyArray<string>
  /** The raw event rows (payload as stored). */
  readonly eventRows: ReadonlyArray<Record<string, unknown>>
  /** The raw audit rows. */
  readonly auditRows: ReadonlyArray<Record<string, unknown>>
  readonly verification: AuditVerification
  /** The registration snapshot row, without its bearer token. */
  readonly registration: Record<string, unknown>
  /** The bearer token stored in the snapshot, for leak checks (`null` when none). */
  readonly bearerToken: string | null
  readonly providers: ReadonlyArray<Record<string, unknown>>
  /** The raw `api_keys` rows (their hashes included). */
  readonly apiKeys: ReadonlyArray<Record<string, unknown>>
}

/** Reads the event log, the audit chain (verified) and the snapshot through a second connection (WAL allows it). */
export const readRecords = (dataDir: string): Effect.Effect<Records> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      AuditLog.Default.pipe(
        Layer.provideMerge(Sqlite.layer({ filename: Path.join(dataDir, "neuron.db"), migrations: NeuronMigrations }))
      )
    )
    const sql = Context.get(context, SqlClient.SqlClient)
    const audit = Context.get(context, AuditLog)
    const eventRows = yield* sql<Record<string, unknown>>`SELECT * FROM lifecycle_events ORDER BY seq`
    const auditRows = yield* sql<Record<string, unknown>>`SELECT * FROM audit_log ORDER BY seq`
    const [row] = yield* sql<Record<string, unknown>>`SELECT * FROM registration`
    const providers = yield* sql<Record<string, unknown>>`SELECT * FROM providers ORDER BY npi`
    const apiKeys = yield* sql<Record<string, unknown>>`SELECT * FROM api_keys ORDER BY created_at, id`
    const { bearer_token, ...registration } = row!
    return {
      events: eventRows.map((r) => r.type as string),
      eventRows,
      auditRows,
      verification: yield* audit.verify(),
      registration,
      bearerToken: typeof bearer_token === "string" ? bearer_token : null,
      providers,
      apiKeys
    }
  }).pipe(Effect.scoped, Effect.orDie)

/** Every log line, with its message, annotations, spans and cause, as text. */
export interface LogCapture {
  readonly logger: Logger.Logger<unknown, void>
  readonly lines: () => ReadonlyArray<string>
}

/** A logger that keeps each line as logfmt plus the structured form (so nothing an annotation holds escapes). */
export const captureLogs = (): LogCapture => {
  const lines: Array<string> = []
  const logger = Logger.make<unknown, void>((options) => {
    const structured = Logger.structuredLogger.log(options)
    lines.push(
      [
        Logger.logfmtLogger.log(options),
        JSON.stringify(structured),
        Cause.isEmpty(options.cause) ? "" : Cause.pretty(options.cause, { renderErrorCause: true })
      ].join(" ")
    )
  })
  return { logger, lines: () => [...lines] }
}

/** The texts where a secret must never appear, and the secret's name, for a readable failure. */
export const assertNoSecret = (
  secrets: ReadonlyArray<readonly [name: string, value: string]>,
  places: ReadonlyArray<readonly [where: string, text: string]>
): void => {
  for (const [name, value] of secrets) {
    if (value.length < 8) throw new Error(`the ${name} under test is too short to search for`)
    for (const [where, text] of places) {
      if (text.includes(value)) throw new Error(`the ${name} appears in ${where}`)
    }
  }
}

/** The bearer token as text, from a `Redacted` or a stored string. */
export const tokenText = (token: Redacted.Redacted<string> | string | null): string | null =>
  token === null ? null : typeof token === "string" ? token : Redacted.value(token)
