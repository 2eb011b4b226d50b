/**
 * The Neuron's HTTP server: `/health`, the admin routes of `NeuronApi` behind the admin rule, `/metrics` in the
 * Prometheus text format (prom-client), and the handshake WebSocket route, all on one server.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpMiddleware from "@effect/platform/HttpMiddleware"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Prometheus from "prom-client"
import * as AdminAccess from "../access/AdminAccess.js"
import { ApiKeys } from "../access/ApiKeys.js"
import { AgentCard } from "../discovery/AgentCard.js"
import { HANDSHAKE_PATH, HandshakeServer } from "../handshake/HandshakeServer.js"
import type { Relationship } from "../handshake/RelationshipStore.js"
import { NeuronHealth } from "../health/NeuronHealth.js"
import * as ApiDocsRoutes from "../http/ApiDocsRoutes.js"
import * as ApiErrors from "../http/ApiErrors.js"
import { NeuronMetrics, type NeuronMetricsService } from "../observability/NeuronMetrics.js"
import { routeMatcher } from "../observability/RouteMatcher.js"
import { NotFound } from "../protocol/AxonApi.js"
import { ConsentRevoked } from "../protocol/ConsentRevocation.js"
import { RegistrationService } from "../registration/RegistrationService.js"
import { type RelationshipNotFound, Relationships } from "../relationships/Relationships.js"
import { StorageUnavailable } from "../sql/StorageUnavailable.js"
import type { Provider } from "../store/Lifecycle.js"
import {
  AdminCaller,
  ApiKeyCreated,
  ApiKeyList,
  ConsentRefused,
  NeuronApi,
  NeuronHealthView,
  NeuronStatusView,
  ProviderAccepted,
  ProviderCreated,
  ProviderRemovalPending,
  ProviderStatusList,
  ProviderStatusView,
  RelationshipAlreadyEnded,
  RelationshipList,
  RelationshipView,
  StorageUnavailableError
} from "./NeuronApi.js"

const providerView = (p: Provider) =>
  new ProviderStatusView({
    provider_npi: p.npi,
    provider_name: p.name,
    provider_types: p.types ?? [],
    specialty: p.specialty,
    provider_endpoint_url: p.endpoint_url,
    status: p.status,
    provider_id: p.provider_id,
    last_error: p.last_error,
    updated_at: p.updated_at
  })

/** A write the store could not keep, as the API answers it: `503 STORAGE_UNAVAILABLE` with the store's message. */
const unavailable = <A, E, R>(effect: Effect.Effect<A, E | StorageUnavailable, R>) =>
  Effect.catchIf(
    effect,
    (e): e is StorageUnavailable => e instanceof StorageUnavailable,
    (e) => Effect.fail(new StorageUnavailableError({ message: e.message }))
  )

/** A relationship as the API shows it: never the patient's key. */
const relationshipView = ({ patient_public_key: _, ...row }: Relationship) => new RelationshipView(row)

const toNotFound = (e: RelationshipNotFound) => new NotFound({ message: e.message })

const HealthLive = HttpApiBuilder.group(NeuronApi, "health", (handlers) =>
  Effect.gen(function*() {
    const health = yield* NeuronHealth
    return handlers.handle("health", () =>
      Effect.map(health.get, (h) =>
        new NeuronHealthView({
          status: h.status === "healthy" ? "healthy" : "degraded",
          registration: h.registration,
          last_heartbeat_at: h.last_heartbeat_at
        })))
  }))

const AdminLive = HttpApiBuilder.group(NeuronApi, "admin", (handlers) =>
  Effect.gen(function*() {
    const registration = yield* RegistrationService
    const health = yield* NeuronHealth
    const handshakes = yield* HandshakeServer
    const relationships = yield* Relationships
    const keys = yield* ApiKeys
    return handlers
      .handle("status", () =>
        Effect.gen(function*() {
          const reg = yield* registration.current
          const h = yield* health.get
          const providers = yield* registration.listProviders
          const count = (status: string) => providers.filter((p) => p.status === status).length
          return new NeuronStatusView({
            registration_id: reg.registration_id,
            registration: reg.state,
            organization_npi: reg.organization_npi ?? registration.identity.organization_npi,
            axon_url: reg.axon_url,
            heartbeat: {
              status: h.status,
              last_heartbeat_at: h.last_heartbeat_at,
              consecutive_failures: h.consecutive_failures,
              next_attempt_at: h.next_attempt_at
            },
            providers: { pending: count("pending"), registered: count("registered"), removing: count("removing") },
            active_handshakes: yield* handshakes.activeSessions
          })
        }))
      .handle("listProviders", () =>
        Effect.map(registration.listProviders, (ps) => new ProviderStatusList({ providers: ps.map(providerView) })))
      .handle("addProvider", ({ payload }) =>
        Effect.map(registration.addProvider(payload), (p) =>
          p.status === "registered"
            ? new ProviderCreated({ outcome: "registered", provider: providerView(p) })
            : new ProviderAccepted({ outcome: "pending", provider: providerView(p) })).pipe(unavailable))
      .handle("removeProvider", ({ path }) =>
        registration.removeProvider(path.provider_npi).pipe(
          Effect.map((outcome) =>
            outcome === "removed"
              ? HttpServerResponse.empty({ status: 204 })
              : new ProviderRemovalPending({ provider_npi: path.provider_npi, status: "removing" })
          ),
          Effect.catchTag("ProviderNotFound", (e) =>
            Effect.fail(new NotFound({ message: e.message }))),
          unavailable
        ))
      .handle("listRelationships", ({ urlParams }) =>
        Effect.map(
          relationships.list({
            ...(urlParams.patient_agent_id === undefined ? {} : { patient_agent_id: urlParams.patient_agent_id }),
            ...(urlParams.provider_npi === undefined ? {} : { provider_npi: urlParams.provider_npi })
          }),
          (rows) =>
            new RelationshipList({ relationships: rows.map(relationshipView) })
        ))
      .handle("getRelationship", ({ path }) =>
        relationships.get(path.relationship_id).pipe(Effect.map(relationshipView), Effect.mapError(toNotFound)))
      .handle("terminateRelationship", ({ path, payload }) =>
        relationships.terminate(path.relationship_id, payload.reason).pipe(
          Effect.map(relationshipView),
          Effect.catchTags({
            RelationshipNotFound: (e) =>
              Effect.fail(toNotFound(e)),
            AlreadyEnded: (e) =>
              Effect.fail(new RelationshipAlreadyEnded({ message: e.message }))
          })
        ))
      .handle("createApiKey", ({ payload }) =>
        Effect.gen(function*() {
          const { actor } = yield* AdminCaller
          const created = yield* keys.create({ ...payload, actor })
          return new ApiKeyCreated({ ...created, key: Redacted.value(created.key) })
        }).pipe(unavailable))
      .handle("listApiKeys", () =>
        Effect.map(keys.list, (api_keys) =>
          new ApiKeyList({ api_keys })))
      .handle("revokeApiKey", ({ path }) =>
        Effect.gen(function*() {
          const { actor } = yield* AdminCaller
          yield* keys.revoke(path.id, actor).pipe(
            Effect.catchTag("ApiKeyNotFound", (e) =>
              Effect.fail(new NotFound({ message: e.message })))
          )
          return HttpServerResponse.empty({ status: 204 })
        }).pipe(unavailable))
  }))

const DiscoveryLive = HttpApiBuilder.group(
  NeuronApi,
  "discovery",
  (handlers) => Effect.map(AgentCard, (card) => handlers.handle("agentCard", () => card.get))
)

const ConsentLive = HttpApiBuilder.group(
  NeuronApi,
  "consent",
  (handlers) =>
    Effect.map(
      Relationships,
      (relationships) =>
        handlers.handle("revoke", ({ payload }) =>
          relationships.revoke(payload).pipe(
            Effect.map((revoked) => new ConsentRevoked({ ...revoked, status: "revoked" })),
            Effect.catchTags({
              RelationshipNotFound: (e) => Effect.fail(toNotFound(e)),
              AlreadyEnded: (e) => Effect.fail(new RelationshipAlreadyEnded({ message: e.message })),
              // A malformed signature never reaches here (the body's schema refuses it with a 400).
              ConsentError: (e) => Effect.fail(new ConsentRefused({ message: e.message }))
            })
          ))
    )
)

/**
 * `GET /metrics`: the Neuron's event metrics (`NeuronMetrics`: heartbeats, backoff, handshakes, SQLite, API
 * requests) and its state as gauges read at scrape time, in one Prometheus text.
 */
const metricsRoute = HttpApiBuilder.Router.use((router) =>
  Effect.gen(function*() {
    const registration = yield* RegistrationService
    const health = yield* NeuronHealth
    const handshakes = yield* HandshakeServer
    const { registry } = yield* NeuronMetrics
    const gauge = (name: string, help: string, labelNames: ReadonlyArray<string> = []) =>
      new Prometheus.Gauge({ name, help, labelNames, registers: [registry] })
    const up = gauge("neuron_healthy", "1 when the registration is alive and the last heartbeat succeeded")
    const failures = gauge("neuron_heartbeat_consecutive_failures", "Heartbeats failed in a row")
    const lastBeat = gauge("neuron_last_heartbeat_timestamp_seconds", "Time of the last successful heartbeat")
    const state = gauge("neuron_registration_state", "1 for the current registration lifecycle state", ["state"])
    const providers = gauge("neuron_providers", "Providers by status", ["status"])
    const active = gauge("neuron_active_handshakes", "Handshakes in progress, queued ones included")
    // Counted by the HandshakeServer as they end (plain numbers, nothing per handshake here), read at scrape time.
    const ended = new Prometheus.Counter({
      name: "neuron_handshakes_total",
      help: "Handshakes ended, by outcome: completed, or the refusal's code (AUTH_TIMEOUT, FORBIDDEN, ...)",
      labelNames: ["outcome"],
      registers: [registry]
    })
    const queued = gauge("neuron_handshake_queue_length", "Upgrades waiting for a slot under the handshake ceiling")
    const collect = Effect.gen(function*() {
      const h = yield* health.get
      const reg = yield* registration.current
      const ps = yield* registration.listProviders
      const sessions = yield* handshakes.activeSessions
      up.set(h.status === "healthy" ? 1 : 0)
      failures.set(h.consecutive_failures)
      if (h.last_heartbeat_at !== null) lastBeat.set(Date.parse(h.last_heartbeat_at) / 1000)
      state.reset()
      state.set({ state: reg.state }, 1)
      providers.reset()
      for (const status of ["pending", "registered", "removing"]) {
        providers.set({ status }, ps.filter((p) => p.status === status).length)
      }
      active.set(sessions.length)
      ended.reset()
      for (const [outcome, n] of yield* handshakes.outcomes) ended.inc({ outcome }, n)
      queued.set(sessions.filter((s) => s.state === "queued").length)
      return yield* Effect.promise(() => registry.metrics())
    })
    yield* router.get(
      "/metrics",
      Effect.map(collect, (text) => HttpServerResponse.text(text, { contentType: registry.contentType }))
    )
  })
)

/**
 * Counts every request but the handshake's (which has its own metrics) in `neuron_api_requests_total`, by the
 * route's template (`/v1/providers/{provider_npi}`; `unmatched` for any other path, to keep the labels bounded).
 */
const requestMetrics = (metrics: NeuronMetricsService) => {
  const routeOf = routeMatcher(NeuronApi)
  return HttpMiddleware.make((app) =>
    Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
      const path = request.url.split("?", 1)[0]!
      if (path === HANDSHAKE_PATH) return app
      return Effect.flatMap(Clock.currentTimeNanos, (start) =>
        Effect.onExit(app, (exit) =>
          Effect.map(Clock.currentTimeNanos, (end) =>
            metrics.apiRequest(
              request.method,
              routeOf(request.method, path),
              Exit.isSuccess(exit) ? exit.value.status : 500,
              Number(end - start) / 1e9
            ))))
    })
  )
}

/** `GET /ws/handshake`: the consent handshake (PROTOCOL.md section 2). */
const handshakeRoute = HttpApiBuilder.Router.use((router) =>
  Effect.flatMap(HandshakeServer, (server) => router.get(HANDSHAKE_PATH, server.handle))
)

/**
 * The Neuron's HTTP server: `NeuronApi` (health and admin, with its OpenAPI document at `/openapi.json`),
 * `/metrics` and the handshake WebSocket, on the `HttpServer` the host provides. Every error leaves in the
 * project's error body.
 */
export const layer = (options: AdminAccess.AdminAccessOptions) =>
  Layer.unwrapEffect(Effect.map(NeuronMetrics, (metrics) => HttpApiBuilder.serve(requestMetrics(metrics)))).pipe(
    // A span per WebSocket upgrade costs more than it tells (the handshake's own audit and logs say more).
    HttpMiddleware.withTracerDisabledForUrls([HANDSHAKE_PATH]),
    Layer.provide(ApiDocsRoutes.layer),
    Layer.provide([metricsRoute, handshakeRoute, ApiErrors.layer(NeuronApi, "the Neuron")]),
    Layer.provide(
      HttpApiBuilder.api(NeuronApi).pipe(
        Layer.provide([HealthLive, AdminLive, ConsentLive, DiscoveryLive]),
        Layer.provide(AdminAccess.layer(options))
      )
    )
  )
