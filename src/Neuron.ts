/**
 * The Neuron as one Layer: registration engine, heartbeat, state store, consent handshake and the local HTTP
 * API, for `pnpm start` and for any Effect program that embeds it. The host decides the platform pieces: it
 * provides `NeuronConfig`, an `HttpClient` (towards the registry), an `HttpServer` (where the Neuron listens),
 * a `SqlClient` (the Neuron migrates it) and the platform's `FileSystem` / `Path`. `Neuron.layerSqlite` builds
 * the usual SQLite client on `<data dir>/neuron.db`.
 */
import type { PlatformError } from "@effect/platform/Error"
import type * as HttpClient from "@effect/platform/HttpClient"
import type * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as Path from "@effect/platform/Path"
import * as Migrator from "@effect/sql/Migrator"
import type * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as Array from "effect/Array"
import * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Stream from "effect/Stream"
import { ApiKeys } from "./access/ApiKeys.js"
import * as NeuronHttp from "./api/NeuronHttp.js"
import { AxonClient } from "./axon/AxonClient.js"
import type { AxonError } from "./axon/AxonError.js"
import { NeuronConfig, type NeuronSettings } from "./config/NeuronConfig.js"
import * as ConsentVerifier from "./consent/ConsentVerifier.js"
import { AgentCard } from "./discovery/AgentCard.js"
import * as Mdns from "./discovery/Mdns.js"
import { Npi } from "./domain/Npi.js"
import * as HandshakeServer from "./handshake/HandshakeServer.js"
import { type ProviderEntry, ProviderLookup } from "./handshake/ProviderLookup.js"
import { RelationshipStore } from "./handshake/RelationshipStore.js"
import { type HealthSnapshot, NeuronHealth } from "./health/NeuronHealth.js"
import * as Heartbeat from "./heartbeat/Heartbeat.js"
import { describeParseError } from "./http/ErrorBody.js"
import { NeuronMetrics } from "./observability/NeuronMetrics.js"
import { RegisterProviderRequest } from "./protocol/AxonApi.js"
import { handshakeEndpoint, PROTOCOL_VERSION } from "./protocol/Version.js"
import type { SyncReport } from "./registration/ProviderSync.js"
import { type NeuronIdentity, type ProviderNotFound, RegistrationService } from "./registration/RegistrationService.js"
import { Relationships } from "./relationships/Relationships.js"
import * as Sqlite from "./sql/Sqlite.js"
import type { StorageUnavailable } from "./sql/StorageUnavailable.js"
import { AuditLog } from "./store/AuditLog.js"
import type { Provider } from "./store/Lifecycle.js"
import { NeuronMigrations } from "./store/migrations.js"
import { RegistrationStore } from "./store/RegistrationStore.js"
import type { Registration } from "./store/Snapshot.js"

/** The organization used when none is configured and the registry is the embedded one (development only). */
export const DEVELOPMENT_ORGANIZATION = { npi: "1234567893" as Npi, name: "Neuron Development Organization" }

/** What a host program can do with a running Neuron. */
export interface NeuronService {
  /** Who this Neuron is. */
  readonly identity: NeuronIdentity
  /** The registration as stored now (its bearer token stays `Redacted`). */
  readonly registration: Effect.Effect<Registration>
  /** The current health, as `/health` and the health file show it. */
  readonly health: Effect.Effect<HealthSnapshot>
  /** Every change of health. */
  readonly healthChanges: Stream.Stream<HealthSnapshot>
  /**
   * Adds a provider (stored first, `pending` until the registry has it). The input is checked like the admin
   * API's body: a bad field fails with `InvalidProvider` naming it, and nothing is stored. A provider the Neuron
   * cannot store (disk full, database locked by another process past a bounded wait) fails with
   * `StorageUnavailable`, and nothing is stored either: try again once the cause is gone.
   */
  readonly addProvider: (
    provider: typeof RegisterProviderRequest.Encoded
  ) => Effect.Effect<Provider, InvalidProvider | StorageUnavailable>
  /**
   * Removes a provider (at once locally; from the registry as soon as it answers). `StorageUnavailable` as for
   * `addProvider`: the provider is then unchanged.
   */
  readonly removeProvider: (
    npi: string
  ) => Effect.Effect<"removed" | "removing", ProviderNotFound | InvalidProvider | StorageUnavailable>
  readonly listProviders: Effect.Effect<ReadonlyArray<Provider>>
  /** One anti-entropy round now. */
  readonly syncProviders: Effect.Effect<SyncReport, AxonError>
  /** Leaves the registry on purpose (decommissioning): heartbeats stop until `register`, also across restarts. */
  readonly deregister: Effect.Effect<void, AxonError>
  /** Registers now when there is no usable registration, including after `deregister`. */
  readonly register: Effect.Effect<void, AxonError>
}

/** A provider given to the `Neuron` service that does not decode; `message` names the field. */
export class InvalidProvider extends Schema.TaggedError<InvalidProvider>()("InvalidProvider", {
  message: Schema.String
}) {}

const decodeInput = <A, I>(schema: Schema.Schema<A, I>) => (input: unknown) =>
  Schema.decodeUnknown(schema)(input).pipe(
    Effect.mapError((e) => new InvalidProvider({ message: describeParseError(e) }))
  )

/** The embedded Neuron's handle. */
export class Neuron extends Context.Tag("neuron/Neuron")<Neuron, NeuronService>() {}

/** The registry URLs to use: the configured ones, or the embedded registry's. */
export const registryUrls = (settings: NeuronSettings): Array.NonEmptyReadonlyArray<string> =>
  Array.isNonEmptyReadonlyArray(settings.registryUrls)
    ? settings.registryUrls
    : [`http://${settings.axon.host === "0.0.0.0" ? "127.0.0.1" : settings.axon.host}:${settings.axon.port}`]

/**
 * Who this Neuron is. A configured registry needs the organization; the embedded one falls back to a clearly
 * logged development organization.
 */
export const identityOf = (settings: NeuronSettings): Effect.Effect<NeuronIdentity, ConfigError.ConfigError> =>
  Effect.gen(function*() {
    const organization = yield* Option.match(settings.organization, {
      onSome: Effect.succeed,
      onNone: () =>
        settings.registryUrls.length > 0
          ? Effect.fail(ConfigError.MissingData(
            ["NEURON_ORGANIZATION_NPI"],
            "is required with AXON_REGISTRY_URL (and NEURON_ORGANIZATION_NAME with it)"
          ))
          : Effect.as(
            Effect.logWarning(
              "no organization configured: using the development organization with the embedded registry"
            ).pipe(Effect.annotateLogs({ organization_npi: DEVELOPMENT_ORGANIZATION.npi })),
            DEVELOPMENT_ORGANIZATION
          )
    })
    return {
      organization_npi: organization.npi,
      organization_name: organization.name,
      organization_type: settings.organizationType,
      endpoint_url: settings.publicUrl,
      heartbeat_interval_s: Math.min(3600, Math.max(1, Math.round(Duration.toSeconds(settings.heartbeatInterval))))
    }
  })

const migrate = Layer.effectDiscard(Migrator.make({})({ loader: Migrator.fromRecord(NeuronMigrations) }))

const make = Effect.gen(function*() {
  const registration = yield* RegistrationService
  const health = yield* NeuronHealth
  return Neuron.of({
    identity: registration.identity,
    registration: registration.current,
    health: health.get,
    healthChanges: health.changes,
    addProvider: (input) => Effect.flatMap(decodeInput(RegisterProviderRequest)(input), registration.addProvider),
    removeProvider: (npi) =>
      Effect.flatMap(
        decodeInput(Schema.Struct({ provider_npi: Npi }))({ provider_npi: npi }),
        (p) => registration.removeProvider(p.provider_npi)
      ),
    listProviders: registration.listProviders,
    syncProviders: registration.syncProviders,
    deregister: registration.deregister,
    register: Effect.asVoid(registration.register)
  })
})

/** A provider as the handshake sees it: served only while it is pending or registered (not being removed). */
const served = (provider: Option.Option<Provider>): Option.Option<ProviderEntry> =>
  Option.flatMap(provider, (p) =>
    p.status === "pending" || p.status === "registered"
      ? Option.some({ provider_npi: p.npi, provider_endpoint_url: Option.fromNullable(p.endpoint_url) })
      : Option.none())

/** Providers the handshake serves: those this Neuron has and is not removing. */
const providerLookup = Layer.effect(
  ProviderLookup,
  Effect.map(RegistrationService, (registration) =>
    ProviderLookup.of({
      find: (npi) => Effect.map(registration.getProvider(npi as Npi), served),
      findNow: (npi) => {
        const cached = registration.getProviderCached(npi as Npi)
        return cached === undefined ? undefined : served(cached)
      }
    }))
)

/**
 * The whole Neuron, configured by `NeuronConfig`. Serves on the host's `HttpServer`, calls the registry through the
 * host's `HttpClient`, stores in the host's `SqlClient` (migrated here).
 */
export const layer: Layer.Layer<
  Neuron,
  ConfigError.ConfigError | SqlError | Migrator.MigrationError | PlatformError,
  | NeuronConfig
  | HttpClient.HttpClient
  | HttpServer.HttpServer
  | HttpRouter.HttpRouter.DefaultServices
  | SqlClient.SqlClient
> = Layer.unwrapEffect(Effect.gen(function*() {
  const settings = yield* NeuronConfig
  const identity = yield* identityOf(settings)
  const stores = Layer.mergeAll(
    RegistrationStore.DefaultWithoutDependencies,
    Relationships.DefaultWithoutDependencies.pipe(Layer.provideMerge(RelationshipStore.DefaultWithoutDependencies)),
    ApiKeys.DefaultWithoutDependencies
  ).pipe(
    Layer.provideMerge(AuditLog.Default),
    Layer.provide(migrate)
  )
  const axon = AxonClient.layer({
    urls: registryUrls(settings),
    timeout: settings.axonTimeout,
    enrollmentToken: settings.enrollmentToken
  })
  const health = NeuronHealth.layer({ dataDir: settings.dataDir })
  const card = AgentCard.layer({
    organization_npi: identity.organization_npi,
    organization_name: identity.organization_name,
    publicUrl: settings.publicUrl
  })
  const services = Layer.mergeAll(RegistrationService.layer(identity), card).pipe(
    Layer.provideMerge(Layer.mergeAll(stores, health, axon))
  )
  const handshake = HandshakeServer.layer({
    publicUrl: settings.publicUrl,
    authTimeout: settings.authTimeout,
    maxConcurrentHandshakes: settings.maxConcurrentHandshakes,
    queueTimeout: settings.queueTimeout,
    maxPayloadBytes: settings.maxPayloadBytes,
    allowedOrigins: Option.getOrUndefined(settings.allowedOrigins)
  }).pipe(
    Layer.provide([
      ConsentVerifier.layer({ organizationNpi: identity.organization_npi, challengeTtl: settings.authTimeout }),
      providerLookup
    ])
  )
  const heartbeat = Heartbeat.layer({
    interval: settings.heartbeatInterval,
    backoffBase: settings.backoffBase,
    backoffCeiling: settings.backoffCeiling
  })
  const http = NeuronHttp.layer({ adminToken: settings.adminToken, apiRateLimit: settings.apiRateLimit })
  const presence = settings.mdns ? mdnsLayer(identity, settings.publicUrl) : Layer.empty
  return Layer.mergeAll(Layer.effect(Neuron, make), heartbeat, http, presence).pipe(
    Layer.provide(handshake.pipe(Layer.provideMerge(services))),
    // One registry for this Neuron, shared by every service that records (a process may run several Neurons).
    Layer.provide(NeuronMetrics.layer)
  )
}))

/**
 * `NEURON_MDNS=true`: advertises the Neuron on the port it listens on (the server's, so port 0 works too) for the
 * length of its scope, on a multicast socket of its own.
 */
const mdnsLayer = (identity: NeuronIdentity, publicUrl: string) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const server = yield* HttpServer.HttpServer
    const port = server.address._tag === "TcpAddress" ? server.address.port : 0
    yield* Mdns.advertise({
      name: `${identity.organization_name} (${identity.organization_npi})`,
      port,
      txt: { npi: identity.organization_npi, ver: PROTOCOL_VERSION, ep: handshakeEndpoint(publicUrl) }
    })
  })).pipe(Layer.provide(Mdns.MdnsTransport.layer()))

/**
 * The usual SQLite client for the Neuron: `<data dir>/neuron.db` (WAL, synchronous=FULL), migrated. A data folder
 * that cannot be written fails it with `StorageUnavailable` (`folder_unwritable`) naming the folder and the reason.
 * The driver waits for another process's lock only briefly: the store's writes wait on a Schedule instead.
 */
export const layerSqlite = Layer.unwrapEffect(
  Effect.gen(function*() {
    const settings = yield* NeuronConfig
    const path = yield* Path.Path
    yield* Sqlite.ensureWritableFolder(settings.dataDir)
    return Sqlite.layer({
      filename: path.join(settings.dataDir, "neuron.db"),
      migrations: NeuronMigrations,
      busyTimeout: Sqlite.SHORT_BUSY_TIMEOUT
    })
  })
)
