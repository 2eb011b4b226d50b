/**
 * The handlers of `AxonApi`, one group layer each. They translate between the wire and the registry's services;
 * the heartbeat handler is the hot path and stays free of spans and SQL.
 */
import * as HttpApiBuilder from "@effect/platform/HttpApiBuilder"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import * as Clock from "effect/Clock"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import {
  AlertList,
  AxonApi,
  HeartbeatAccepted,
  NeuronRegistered,
  NeuronReregistered,
  ProviderAlreadyRegistered,
  ProviderList,
  ProviderRegistered,
  RegistryHealth,
  RegistryStats
} from "../protocol/AxonApi.js"
import { Alerts } from "./Alerts.js"
import { Availability } from "./Availability.js"
import { Discovery, toView } from "./Discovery.js"
import { HeartbeatMonitor } from "./HeartbeatMonitor.js"
import { ProviderStore } from "./ProviderStore.js"
import { RegistryStore } from "./RegistryStore.js"

/**
 * A `200` answer whose body has the same shape as the endpoint's `201` one. The platform picks the response
 * schema by shape, which would answer `201`: encode it here so the status is the one the contract says.
 */
const ok = <A, I>(schema: Schema.Schema<A, I>, value: A) =>
  HttpServerResponse.unsafeJson(Schema.encodeSync(schema)(value), { status: 200 })

/** Alerts served when `limit` is not given. */
export const DEFAULT_ALERTS_LIMIT = 100

const NeuronsLive = HttpApiBuilder.group(AxonApi, "neurons", (handlers) =>
  Effect.gen(function*() {
    const store = yield* RegistryStore
    const discovery = yield* Discovery
    return handlers
      .handle("register", ({ payload, request }) =>
        Effect.map(store.register(payload, request.headers.authorization), ({ created, entry, token }) => {
          const fields = {
            registration_id: entry.registrationId,
            bearer_token: token,
            status: "reachable" as const,
            heartbeat_interval_s: entry.intervalS,
            ttl_s: entry.intervalS * 3
          }
          return created ? new NeuronRegistered(fields) : ok(NeuronReregistered, new NeuronReregistered(fields))
        }))
      .handle("list", ({ urlParams }) =>
        discovery.list(urlParams))
  }))

const NeuronLive = HttpApiBuilder.group(AxonApi, "neuron", (handlers) =>
  Effect.gen(function*() {
    const store = yield* RegistryStore
    return handlers
      .handle("get", ({ path, request }) =>
        Effect.map(store.authorize(path.registration_id, request.headers.authorization), toView))
      .handle("heartbeat", ({ path, payload, request }) =>
        store.authorize(path.registration_id, request.headers.authorization).pipe(
          Effect.flatMap((entry) =>
            store.heartbeat(entry, payload.neuron_endpoint_url)
          ),
          Effect.map((nowMs) =>
            // Built from values known to be valid: skip the constructor's validation on the hot path.
            new HeartbeatAccepted({ status: "reachable", last_heartbeat_at: DateTime.unsafeMake(nowMs) }, true)
          )
        ))
      .handle("deregister", ({ path, request }) =>
        Effect.flatMap(store.authorize(path.registration_id, request.headers.authorization), store.deregister))
  }))

const ProvidersLive = HttpApiBuilder.group(AxonApi, "providers", (handlers) =>
  Effect.gen(function*() {
    const store = yield* RegistryStore
    const providers = yield* ProviderStore
    return handlers
      .handle("add", ({ path, payload, request }) =>
        store.authorize(path.registration_id, request.headers.authorization).pipe(
          Effect.flatMap((entry) =>
            providers.add(entry, payload)
          ),
          Effect.map(({ created, providerId }) =>
            created
              ? new ProviderRegistered({ provider_id: providerId, status: "registered" })
              : ok(
                ProviderAlreadyRegistered,
                new ProviderAlreadyRegistered({ provider_id: providerId, status: "registered" })
              )
          )
        ))
      .handle("remove", ({ path, request }) =>
        store.authorize(path.registration_id, request.headers.authorization).pipe(
          Effect.flatMap((entry) => providers.remove(entry, path.provider_npi))
        ))
      .handle("list", ({ path, request }) =>
        store.authorize(path.registration_id, request.headers.authorization).pipe(
          Effect.flatMap(providers.list),
          Effect.map((list) => new ProviderList({ providers: list }))
        ))
  }))

const DiscoveryLive = HttpApiBuilder.group(AxonApi, "discovery", (handlers) =>
  Effect.gen(function*() {
    const discovery = yield* Discovery
    return handlers.handle("lookup", ({ path }) => discovery.lookup(path.npi))
  }))

/** How old `/health.neurons` may be (see OperationsLive). */
const HEALTH_COUNT_MAX_AGE_MS = 1_000

const OperationsLive = HttpApiBuilder.group(AxonApi, "operations", (handlers) =>
  Effect.gen(function*() {
    const store = yield* RegistryStore
    const providers = yield* ProviderStore
    const monitor = yield* HeartbeatMonitor
    const alerts = yield* Alerts
    const availability = yield* Availability
    const startedAt = yield* Clock.currentTimeMillis
    // `/health` is what a load balancer polls, on every instance, every few seconds: its count of neurons (a scan
    // of the live rows, tens of ms at 100 000 on PostgreSQL) is taken at most once a second per instance. A
    // database known to be down still answers 503 at once; a failed count is never reused.
    let lastCount: { readonly at: number; readonly neurons: number } | undefined
    const healthCount = (now: number) =>
      lastCount !== undefined && now - lastCount.at < HEALTH_COUNT_MAX_AGE_MS
        ? Effect.as(availability.check, lastCount.neurons)
        : Effect.map(store.counts, (counts) => {
          lastCount = { at: now, neurons: counts.reachable + counts.down }
          return lastCount.neurons
        })
    return handlers
      .handle("health", () =>
        Effect.flatMap(Clock.currentTimeMillis, (now) =>
          Effect.map(healthCount(now), (neurons) =>
            new RegistryHealth({
              status: "ok",
              uptime_s: Math.max(0, Math.floor((now - startedAt) / 1000)),
              neurons
            }))))
      .handle("stats", () =>
        Effect.gen(function*() {
          const counts = yield* store.counts
          return new RegistryStats({
            total_neurons: counts.reachable + counts.down,
            reachable_neurons: counts.reachable,
            down_neurons: counts.down,
            total_providers: yield* providers.countLive,
            last_sweep_at: Option.getOrNull(yield* monitor.lastSweepAt)
          })
        }))
      .handle("alerts", ({ urlParams }) =>
        Effect.map(
          alerts.list({
            since: Option.fromNullable(urlParams.since),
            limit: urlParams.limit ?? DEFAULT_ALERTS_LIMIT
          }),
          (list) =>
            new AlertList({ alerts: list })
        ))
  }))

/** Every group's handlers, for `HttpApiBuilder.api(AxonApi)`. */
export const layer = Layer.mergeAll(NeuronsLive, NeuronLive, ProvidersLive, DiscoveryLive, OperationsLive)
