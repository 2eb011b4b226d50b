/**
 * The Axon registry as a Layer: give it an `HttpServer` and it serves `AxonApi` (plus `GET /openapi.json`)
 * with its state in `<dataDir>/axon.db` (or, with `databaseUrl`, in a PostgreSQL database that any number of
 * instances share) and its alerts in `<dataDir>/alerts-YYYYMMDD.jsonl`. `pnpm start:axon` runs it on its own
 * (`main.ts`); the Neuron embeds it on a port of its own:
 *
 *   AxonRegistry.layer({ dataDir, enrollmentToken }).pipe(Layer.provide(NodeHttpServer.layer(createServer, { port })))
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as FileSystem from "@effect/platform/FileSystem"
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Path from "node:path"
import * as ApiDocsRoutes from "../http/ApiDocsRoutes.js"
import * as ApiErrors from "../http/ApiErrors.js"
import { AxonApi } from "../protocol/AxonApi.js"
import * as Postgres from "../sql/Postgres.js"
import * as Sqlite from "../sql/Sqlite.js"
import { Alerts } from "./Alerts.js"
import { Availability } from "./Availability.js"
import { Discovery } from "./Discovery.js"
import * as HeartbeatFastPath from "./HeartbeatFastPath.js"
import { HeartbeatMonitor } from "./HeartbeatMonitor.js"
import { migrations } from "./migrations.js"
import * as PgRegistryStore from "./PgRegistryStore.js"
import { ProviderStore } from "./ProviderStore.js"
import * as RegistrationFastPath from "./RegistrationFastPath.js"
import * as RegistryHttp from "./RegistryHttp.js"
import { RegistrySettings } from "./RegistrySettings.js"
import { RegistryStore } from "./RegistryStore.js"
import * as SqliteRegistryStore from "./SqliteRegistryStore.js"
import * as Tokens from "./Tokens.js"

/** What the registry needs to run. */
export interface AxonRegistryOptions {
  /** Folder for `axon.db` (SQLite) and the alert files; created when missing. */
  readonly dataDir: string
  /**
   * A PostgreSQL URL (`postgres://user:password@host:port/database`): keep everything in that database, shared
   * by every instance given the same URL. `None` (or empty): SQLite in `dataDir`.
   */
  readonly databaseUrl?: Option.Option<Redacted.Redacted<string>> | undefined
  /** When set (and not empty), registering needs it as a bearer token, and re-registering rotates tokens. */
  readonly enrollmentToken: Option.Option<Redacted.Redacted<string>>
}

/**
 * The registry's configuration from the environment: `AXON_DATA_DIR`, `AXON_ENROLLMENT_TOKEN`,
 * `AXON_DATABASE_URL`.
 */
export const config: Config.Config<AxonRegistryOptions> = Config.all({
  dataDir: Config.string("AXON_DATA_DIR").pipe(
    Config.withDefault("./data/axon"),
    Config.withDescription("folder of the registry's SQLite file and alert files")
  ),
  databaseUrl: Config.option(Config.redacted("AXON_DATABASE_URL")).pipe(
    Config.withDescription("PostgreSQL URL shared by many registry instances; unset or empty: SQLite in AXON_DATA_DIR")
  ),
  enrollmentToken: Config.option(Config.redacted("AXON_ENROLLMENT_TOKEN")).pipe(
    Config.withDescription("enrollment token; unset or empty is development mode (duplicate NPIs answer 409)")
  )
})

/** The registry's services on their database, without HTTP (tests reach the monitor and store through it). */
export const layerServices = (options: AxonRegistryOptions) => {
  const enrollmentHash = options.enrollmentToken.pipe(
    Option.filter((token) => Redacted.value(token).length > 0),
    Option.map((token) => Tokens.hash(Redacted.value(token)))
  )
  const databaseUrl = (options.databaseUrl ?? Option.none()).pipe(
    Option.filter((url) => Redacted.value(url).length > 0)
  )
  const onPostgres = Option.isSome(databaseUrl)
  const database = Option.match(databaseUrl, {
    onNone: () =>
      Layer.merge(
        Sqlite.layer({ filename: Path.join(options.dataDir, "axon.db"), migrations }),
        Availability.layerSqlite
      ),
    onSome: (url) =>
      Availability.layerPg.pipe(
        Layer.provideMerge(Postgres.layer({ url, migrations })),
        // The alert files of this instance still go to its data folder.
        Layer.provideMerge(makeDataDir(options.dataDir))
      )
  })
  const base = Layer.mergeAll(
    Layer.succeed(RegistrySettings, { dataDir: options.dataDir, enrollmentHash, alertsInDatabase: onPostgres }),
    database,
    NodeContext.layer
  )
  const store = (onPostgres ? PgRegistryStore.layer : SqliteRegistryStore.layer).pipe(
    Layer.provideMerge(Alerts.Default)
  )
  return Layer.mergeAll(HeartbeatMonitor.Default, Discovery.Default).pipe(
    Layer.provideMerge(Layer.merge(store, ProviderStore.Default)),
    Layer.provideMerge(base)
  )
}

const makeDataDir = (dataDir: string) =>
  Layer.effectDiscard(
    Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeDirectory(dataDir, { recursive: true })).pipe(Effect.orDie)
  ).pipe(Layer.provide(NodeContext.layer))

// The heartbeat is the hot path: no request span for it, and its own handler ahead of the router.
const isHeartbeat = (request: { readonly method: string; readonly url: string }) =>
  request.method === "PUT" && request.url.includes("/endpoint")

// `HttpApiBuilder.serve`, with the heartbeat's and the registration's own handlers ahead of the API's router (the
// registration's taken from the Node server itself where there is one).
const serve = Effect.gen(function*() {
  const app = yield* HttpApiBuilder.httpApp
  const store = yield* RegistryStore
  const heartbeats = HeartbeatFastPath.middleware(store.answerHeartbeat)
  const registrations = RegistrationFastPath.middleware(store.register)
  yield* HttpServer.serveEffect(app, (app) => heartbeats(registrations(app)))
  // After the platform serves, so that it is released before the platform stops serving.
  yield* RegistrationFastPath.take(yield* HttpServer.HttpServer, store.register)
}).pipe(
  Layer.scopedDiscard,
  Layer.provide([HttpApiBuilder.Router.Live, HttpApiBuilder.Middleware.layer]),
  HttpMiddleware.withTracerDisabledWhen(isHeartbeat),
  Layer.provide(ApiDocsRoutes.layer),
  Layer.provide(ApiErrors.layer(AxonApi, "the registry")),
  Layer.provide(HttpApiBuilder.api(AxonApi).pipe(Layer.provide(RegistryHttp.layer))),
  Layer.provide(NodeHttpServer.layerContext)
)

/**
 * The registry served on the given `HttpServer`, keeping its services visible (for tests and tools).
 * `Layer.fresh`: the platform's API router is a shared layer, and a host that serves an `HttpApi` of its own
 * must not get the registry's routes mixed into it.
 */
export const layerWithServices = (options: AxonRegistryOptions) =>
  Layer.fresh(serve.pipe(Layer.provideMerge(layerServices(options))))

/** The registry served on the given `HttpServer`. */
export const layer = (options: AxonRegistryOptions) => Layer.fresh(serve.pipe(Layer.provide(layerServices(options))))

/** `layer` configured from the environment (or the given `Config`). */
export const layerConfig = (options: Config.Config<AxonRegistryOptions> = config) =>
  Layer.unwrapEffect(Effect.map(options, layer))
