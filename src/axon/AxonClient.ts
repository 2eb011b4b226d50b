/**
 * The Neuron's client for an Axon registry (PROTOCOL.md section 1), on `@effect/platform`'s `HttpClient`, which
 * the host provides. Each call has a time limit, a 4xx is never retried, and the client fails over across the
 * registry URLs (docs/axon-client.md). Bearer and enrollment tokens stay `Redacted` until the request is sent.
 */
import type * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import type * as Arr from "effect/Array"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import type { ProviderView } from "../protocol/AxonApi.js"
import { HeartbeatRequest, RegisterNeuronRequest, RegisterProviderRequest } from "../protocol/AxonApi.js"
import {
  DEFAULT_HEARTBEAT_INTERVAL_S,
  DEFAULT_TTL_S,
  HeartbeatAnswer,
  ProviderAnswer,
  ProviderListAnswer,
  RegistrationAnswer
} from "./AxonAnswers.js"
import { axonClientConfig } from "./AxonClientConfig.js"
import type { AxonError } from "./AxonError.js"
import * as AxonFakes from "./AxonFakes.js"
import * as AxonTransport from "./AxonTransport.js"

/** What a neuron-scoped call needs: the registration id and its bearer token. */
export interface RegistrationRef {
  readonly registration_id: string
  readonly bearer_token: Redacted.Redacted<string>
}

/** A registration as the registry granted it. `axonUrl` is the registry that holds it. */
export interface Registration extends RegistrationRef {
  readonly heartbeat_interval_s: number
  readonly ttl_s: number
  /** `200`: the NPI was registered already and the enrollment token renewed it (same id, new token). */
  readonly reregistered: boolean
  readonly axonUrl: string
}

/** A provider add: `provider_id` is null when a looser registry only said "already registered". */
export interface ProviderAdded {
  readonly provider_id: string | null
  readonly alreadyRegistered: boolean
}

/** The client's operations. Every failure is an `AxonError`. */
export interface AxonClientService {
  readonly registerNeuron: (request: RegisterNeuronRequest) => Effect.Effect<Registration, AxonError>
  /** The heartbeat. `last_heartbeat_at` is the registry's, or the local clock's when it gives none. */
  readonly updateEndpoint: (
    registration: RegistrationRef,
    neuron_endpoint_url: string
  ) => Effect.Effect<{ readonly last_heartbeat_at: DateTime.Utc }, AxonError>
  readonly registerProvider: (
    registration: RegistrationRef,
    provider: RegisterProviderRequest
  ) => Effect.Effect<ProviderAdded, AxonError>
  readonly removeProvider: (registration: RegistrationRef, provider_npi: string) => Effect.Effect<void, AxonError>
  /** Fails with `not_supported` on a registry without a listing (the public CareAgent Axon). */
  readonly listProviders: (registration: RegistrationRef) => Effect.Effect<ReadonlyArray<ProviderView>, AxonError>
  readonly deregister: (registration: RegistrationRef) => Effect.Effect<void, AxonError>
  /** The registry the client is talking to now. */
  readonly currentUrl: Effect.Effect<string>
}

/** How to reach the registries. */
export interface AxonClientOptions {
  /** Base URLs, tried in order on failover (validated and normalized by `parseRegistryUrls`). */
  readonly urls: Arr.NonEmptyReadonlyArray<string>
  /** One attempt's time limit, request and answer included (`NEURON_AXON_TIMEOUT_MS`). */
  readonly timeout: Duration.DurationInput
  /** Sent as the bearer token of `POST /v1/neurons` (`AXON_ENROLLMENT_TOKEN`). */
  readonly enrollmentToken: Option.Option<Redacted.Redacted<string>>
}

/** Builds the client on the host's `HttpClient`. */
export const make = (options: AxonClientOptions): Effect.Effect<AxonClientService, never, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const { current, run } = yield* AxonTransport.make(options)
    const neuronPath = (ref: RegistrationRef) => `/v1/neurons/${encodeURIComponent(ref.registration_id)}`

    const registerNeuron = Effect.fn("AxonClient.registerNeuron")(function*(req: RegisterNeuronRequest) {
      const request = yield* AxonTransport.withBody(
        "register",
        RegisterNeuronRequest,
        req,
        HttpClientRequest.post("/v1/neurons")
      )
      return yield* run<Registration>({
        operation: "register",
        request,
        token: options.enrollmentToken,
        onSuccess: (response, axonUrl) =>
          Effect.map(AxonTransport.schemaBodyJson(RegistrationAnswer)(response), (body) => ({
            registration_id: body.registration_id,
            bearer_token: body.bearer_token,
            heartbeat_interval_s: body.heartbeat_interval_s ?? req.heartbeat_interval_s ?? DEFAULT_HEARTBEAT_INTERVAL_S,
            ttl_s: body.ttl_s ?? DEFAULT_TTL_S,
            reregistered: response.status === 200,
            axonUrl
          }))
      })
    })

    const updateEndpoint = Effect.fn("AxonClient.updateEndpoint")(function*(ref: RegistrationRef, url: string) {
      const request = yield* AxonTransport.withBody(
        "heartbeat",
        HeartbeatRequest,
        { neuron_endpoint_url: url },
        HttpClientRequest.put(`${neuronPath(ref)}/endpoint`)
      )
      return yield* run({
        operation: "heartbeat",
        request,
        token: Option.some(ref.bearer_token),
        onSuccess: (response) =>
          Effect.flatMap(
            AxonTransport.schemaBodyJson(HeartbeatAnswer)(response),
            (body) =>
              body.last_heartbeat_at === undefined
                ? Effect.map(DateTime.now, (now) => ({ last_heartbeat_at: now }))
                : Effect.succeed({ last_heartbeat_at: body.last_heartbeat_at })
          )
      })
    })

    const registerProvider = Effect.fn("AxonClient.registerProvider")(
      function*(ref: RegistrationRef, provider: RegisterProviderRequest) {
        const request = yield* AxonTransport.withBody(
          "provider_add",
          RegisterProviderRequest,
          provider,
          HttpClientRequest.post(`${neuronPath(ref)}/providers`)
        )
        return yield* run<ProviderAdded>({
          operation: "provider_add",
          request,
          token: Option.some(ref.bearer_token),
          alreadyRegistered: { provider_id: null, alreadyRegistered: true },
          onSuccess: (response) =>
            Effect.map(AxonTransport.schemaBodyJson(ProviderAnswer)(response), (body) => ({
              provider_id: body.provider_id,
              alreadyRegistered: response.status === 200
            }))
        })
      }
    )

    const removeProvider = Effect.fn("AxonClient.removeProvider")(function*(ref: RegistrationRef, npi: string) {
      return yield* run({
        operation: "provider_remove",
        request: HttpClientRequest.del(`${neuronPath(ref)}/providers/${encodeURIComponent(npi)}`),
        token: Option.some(ref.bearer_token),
        onSuccess: () => Effect.void
      })
    })

    const listProviders = Effect.fn("AxonClient.listProviders")(function*(ref: RegistrationRef) {
      return yield* run({
        operation: "provider_list",
        request: HttpClientRequest.get(`${neuronPath(ref)}/providers`),
        token: Option.some(ref.bearer_token),
        onSuccess: (response) =>
          Effect.map(AxonTransport.schemaBodyJson(ProviderListAnswer)(response), (body) => body.providers)
      })
    })

    const deregister = Effect.fn("AxonClient.deregister")(function*(ref: RegistrationRef) {
      return yield* run({
        operation: "deregister",
        request: HttpClientRequest.del(neuronPath(ref)),
        token: Option.some(ref.bearer_token),
        onSuccess: () => Effect.void
      })
    })

    return {
      registerNeuron,
      updateEndpoint,
      registerProvider,
      removeProvider,
      listProviders,
      deregister,
      currentUrl: current
    } satisfies AxonClientService
  })

/** The Neuron's Axon registry client. */
export class AxonClient extends Context.Tag("neuron/AxonClient")<AxonClient, AxonClientService>() {
  /** Builds the service on the host's `HttpClient`. */
  static readonly make = make
  /** The client for `options`; needs an `HttpClient` (NodeHttpClient, FetchHttpClient, ...). */
  static readonly layer = (options: AxonClientOptions): Layer.Layer<AxonClient, never, HttpClient.HttpClient> =>
    Layer.effect(AxonClient, make(options))
  /** The client configured from `AXON_REGISTRY_URL`, `NEURON_AXON_TIMEOUT_MS` and `AXON_ENROLLMENT_TOKEN`. */
  static readonly layerConfig = (
    config: Config.Config<AxonClientOptions> = axonClientConfig
  ): Layer.Layer<AxonClient, ConfigError.ConfigError, HttpClient.HttpClient> =>
    Layer.unwrapEffect(Effect.map(config, AxonClient.layer))
  /** A fake where only the given methods work; the others die (for tests about something else). */
  static readonly layerTest = (impl: Partial<AxonClientService>): Layer.Layer<AxonClient> =>
    Layer.succeed(AxonClient, AxonFakes.partial(impl))
  /** A scriptable in-memory registry, with its handle `AxonMemory` to make it fail or inspect it. */
  static readonly layerMemory = (
    options?: AxonFakes.AxonMemoryOptions
  ): Layer.Layer<AxonClient | AxonFakes.AxonMemory> =>
    Layer.effectContext(
      Effect.map(
        AxonFakes.makeMemory(options),
        ({ client, handle }) => Context.make(AxonClient, client).pipe(Context.add(AxonFakes.AxonMemory, handle))
      )
    )
}
