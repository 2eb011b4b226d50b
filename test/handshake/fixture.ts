/**
 * A real Neuron HTTP server for handshake tests: Node HTTP on port 0, the HttpLayerRouter with the handshake
 * route next to another route, a real SQLite file in a temporary folder, the real ConsentVerifier and
 * AuditLog; only the provider registry is a fake (ProviderLookup.layerTest).
 */
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as HttpServer from "@effect/platform/HttpServer"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as SqlClient from "@effect/sql/SqlClient"
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import { createServer, type Server } from "node:http"
import * as CareAgentClient from "../../src/careagent/CareAgentClient.js"
import { makeConsentClaims, type PatientKeyPair, signConsentToken } from "../../src/careagent/CareAgentKeys.js"
import type { ConsentClaims } from "../../src/consent/ConsentToken.js"
import * as ConsentVerifier from "../../src/consent/ConsentVerifier.js"
import { Npi } from "../../src/domain/Npi.js"
import * as HandshakeServer from "../../src/handshake/HandshakeServer.js"
import { ProviderLookup } from "../../src/handshake/ProviderLookup.js"
import { RelationshipStore } from "../../src/handshake/RelationshipStore.js"
import * as Sqlite from "../../src/sql/Sqlite.js"
import { AuditLog } from "../../src/store/AuditLog.js"
import { NeuronMigrations } from "../../src/store/migrations.js"

export const ORG = Npi.make("1234567893")
/** Registered, without an endpoint of its own. */
export const PROVIDER = Npi.make("1558598797")
/** Registered, with its own endpoint. */
export const PROVIDER_WITH_ENDPOINT = Npi.make("1245319599")
/** A valid NPI that is not a provider of this Neuron. */
export const UNKNOWN_PROVIDER = Npi.make("1003000126")
export const PATIENT = "patient-agent-7"
export const PUBLIC_URL = "https://neuron.example.org"
export const OWN_ENDPOINT = "wss://provider.example.org/agent"
/** 2026-11-22T10:30:00Z: tests run on a TestClock set here. */
export const NOW = Date.parse("2026-11-22T10:30:00.000Z")

/** A running test Neuron. */
export interface TestNeuron {
  /** `ws://127.0.0.1:<port>` */
  readonly base: string
  /** `ws://127.0.0.1:<port>/ws/handshake` */
  readonly url: string
  readonly server: HandshakeServer.HandshakeServer["Type"]
  readonly relationships: RelationshipStore
  readonly audit: AuditLog
  readonly sql: SqlClient.SqlClient
}

const defaultProviders = () =>
  ProviderLookup.layerTest(new Map([[PROVIDER, null], [PROVIDER_WITH_ENDPOINT, OWN_ENDPOINT]]))

/** What the HandshakeServer needs, on a SQLite file in `dir`. */
export const dependencies = (
  dir: string,
  authTimeout: Duration.DurationInput,
  providers: Layer.Layer<ProviderLookup> = defaultProviders()
) =>
  Layer.mergeAll(
    ConsentVerifier.layer({ organizationNpi: ORG, challengeTtl: authTimeout }),
    providers,
    RelationshipStore.Default,
    AuditLog.Default
  ).pipe(Layer.provideMerge(Sqlite.layer({ filename: `${dir}/neuron.db`, migrations: NeuronMigrations })))

/** The handshake route next to another route, served on Node HTTP (port 0). */
export const serving = <E, R>(
  handshake: Layer.Layer<HandshakeServer.HandshakeServer, E, R>,
  makeServer: () => Server = createServer
) => {
  const otherRoute = HttpLayerRouter.add("GET", "/health", HttpServerResponse.unsafeJson({ status: "ok" }))
  return HttpLayerRouter.serve(Layer.mergeAll(HandshakeServer.route, otherRoute), {
    disableLogger: true,
    disableListenLog: true
  }).pipe(
    Layer.provideMerge(handshake),
    Layer.provideMerge(NodeHttpServer.layer(makeServer, { port: 0, host: "127.0.0.1" }))
  )
}

/**
 * The HandshakeServer in a scope of its own (`serviceScope`), served by an HTTP server and on services that
 * outlive it (`deps`): for tests that close the service alone while the rest of the Neuron stays up.
 */
export const serviceAlone = (
  dir: string,
  options?: { readonly maxConcurrentHandshakes?: number; readonly makeServer?: () => Server }
) =>
  Effect.gen(function*() {
    const deps = yield* Layer.build(dependencies(dir, "10 seconds")).pipe(Effect.orDie)
    const serviceScope = yield* Scope.make()
    const service = yield* Layer.buildWithScope(
      HandshakeServer.layer({
        publicUrl: "http://neuron.test",
        ...(options?.maxConcurrentHandshakes === undefined
          ? {}
          : { maxConcurrentHandshakes: options.maxConcurrentHandshakes })
      }),
      serviceScope
    ).pipe(Effect.provide(deps))
    const served = yield* Layer.build(serving(Layer.succeedContext(service), options?.makeServer)).pipe(Effect.orDie)
    return { deps, serviceScope, neuron: fromContext(Context.merge(deps, served)) }
  })

/** The whole server as one Layer, the way a host program composes it. */
export const neuronLayer = (
  dir: string,
  options?: Partial<HandshakeServer.HandshakeServerOptions>,
  providers?: Layer.Layer<ProviderLookup>,
  makeServer?: () => Server
) => {
  const authTimeout = options?.authTimeout ?? "10 seconds"
  return serving(
    HandshakeServer.layer({ publicUrl: PUBLIC_URL + "/", ...options, authTimeout }).pipe(
      Layer.provideMerge(dependencies(dir, authTimeout, providers))
    ),
    makeServer
  )
}

/** Reads the running Neuron out of a built context. */
export const fromContext = (context: Context.Context<any>): TestNeuron => {
  const address = Context.get(context, HttpServer.HttpServer).address
  if (address._tag !== "TcpAddress") throw new Error("expected a TCP address")
  const base = `ws://127.0.0.1:${address.port}`
  return {
    base,
    url: `${base}/ws/handshake`,
    server: Context.get(context, HandshakeServer.HandshakeServer),
    relationships: Context.get(context, RelationshipStore),
    audit: Context.get(context, AuditLog),
    sql: Context.get(context, SqlClient.SqlClient)
  }
}

/** Starts a Neuron for the current scope. */
export const startNeuron = (
  options?: Partial<HandshakeServer.HandshakeServerOptions>,
  providers?: Layer.Layer<ProviderLookup>,
  makeServer?: () => Server
): Effect.Effect<TestNeuron, never, Scope.Scope> =>
  Effect.gen(function*() {
    const dir = yield* Sqlite.makeTempDir("handshake-")
    const context = yield* Layer.build(neuronLayer(dir, options, providers, makeServer)).pipe(Effect.orDie)
    return fromContext(context)
  })

/** A handshake with sensible defaults. */
export const handshakeWith = (
  neuron: TestNeuron,
  key: PatientKeyPair,
  overrides: Partial<CareAgentClient.HandshakeRequest> = {}
) =>
  CareAgentClient.handshake({
    url: neuron.url,
    key,
    patient_agent_id: PATIENT,
    provider_npi: PROVIDER,
    consented_actions: ["read:summary", "message:send"],
    patient_endpoint: "https://patient.example.org/agent",
    ...overrides
  })

/** Waits (polling the server, in real time) until `predicate` holds. Not a timed assertion: a bounded wait. */
export const eventually = <A>(
  effect: Effect.Effect<A>,
  predicate: (a: A) => boolean,
  what = "a condition"
): Effect.Effect<A> =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      const value = yield* effect
      if (predicate(value)) return value
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
    }
    return yield* Effect.dieMessage(`timed out waiting for ${what}`)
  })

/** A `handshake.auth` message for `key`; claims and message fields can be overridden. */
export const authMessage = (
  key: PatientKeyPair,
  overrides: { readonly claims?: Partial<ConsentClaims>; readonly message?: Record<string, unknown> } = {}
) =>
  Effect.map(
    makeConsentClaims({ patient_agent_id: PATIENT, provider_npi: PROVIDER, consented_actions: ["read:summary"] }),
    (claims) => ({
      type: "handshake.auth",
      ...signConsentToken(key, { ...claims, ...overrides.claims }),
      patient_agent_id: PATIENT,
      patient_public_key: key.publicKeyB64u,
      patient_endpoint: "https://patient.example.org/agent",
      ...overrides.message
    })
  )

/** Waits until the TestClock has a pending sleep (the server's timer is armed), then moves time by `by`. */
export const adjustWhenArmed = (by: Duration.DurationInput) =>
  Effect.zipRight(
    eventually(TestClock.sleeps(), (sleeps) => Chunk.size(sleeps) > 0, "an armed timer"),
    TestClock.adjust(by)
  )
