/**
 * Stand-ins for `AxonClient` in tests about something else (STYLE point 3): a partial fake whose missing methods
 * die, and an in-memory registry that follows the contract's answers and can be told to fail.
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Ref from "effect/Ref"
import type { ProviderView } from "../protocol/AxonApi.js"
import type { AxonClientService, Registration, RegistrationRef } from "./AxonClient.js"
import { AxonError, type AxonErrorReason, type AxonOperation } from "./AxonError.js"

/** An `AxonClient` where only `impl`'s members work; using any other dies with a message naming it. */
export const partial = (impl: Partial<AxonClientService>): AxonClientService => {
  const missing = (name: string) => Effect.dieMessage(`AxonClient.${name} is not implemented by this test layer`)
  return {
    registerNeuron: impl.registerNeuron ?? (() => missing("registerNeuron")),
    updateEndpoint: impl.updateEndpoint ?? (() => missing("updateEndpoint")),
    registerProvider: impl.registerProvider ?? (() => missing("registerProvider")),
    removeProvider: impl.removeProvider ?? (() => missing("removeProvider")),
    listProviders: impl.listProviders ?? (() => missing("listProviders")),
    deregister: impl.deregister ?? (() => missing("deregister")),
    currentUrl: impl.currentUrl ?? missing("currentUrl")
  }
}

/** How the in-memory registry behaves at start. */
export interface AxonMemoryOptions {
  readonly url?: string
  /** Re-registering a known NPI renews it (200, new token) as with an enrollment token; otherwise 409 conflict. */
  readonly enrollment?: boolean
  /** `false` behaves like the public CareAgent Axon: the provider listing is `not_supported`. */
  readonly listing?: boolean
  readonly ttl_s?: number
}

/** One neuron as the in-memory registry holds it. */
export interface MemoryNeuron {
  readonly registration_id: string
  readonly organization_npi: string
  readonly neuron_endpoint_url: string
  readonly heartbeats: number
  readonly providers: ReadonlyArray<string>
}

/** One call the fake received, and how it ended. */
export interface MemoryCall {
  readonly operation: AxonOperation
  readonly outcome: "ok" | AxonErrorReason
}

/** Scripts and inspects the in-memory registry. */
export interface AxonMemoryHandle {
  /** `"up"` answers; any other reason fails every call with it until set back (no real time passes). */
  readonly setMode: (mode: "up" | "unreachable" | "timeout" | "server_error") => Effect.Effect<void>
  /** The next call (of `operation`, if given) fails with `reason`, `times` times (default once). */
  readonly failNext: (
    reason: AxonErrorReason,
    options?: { readonly operation?: AxonOperation; readonly times?: number }
  ) => Effect.Effect<void>
  /** The registry deregisters this neuron (or all): its routes now answer 404, as after its TTL. */
  readonly dropRegistration: (registration_id?: string) => Effect.Effect<void>
  /** The registry no longer knows the neuron's token: its routes answer 401 (the public Axon after a restart). */
  readonly forgetToken: (registration_id?: string) => Effect.Effect<void>
  readonly neurons: Effect.Effect<ReadonlyArray<MemoryNeuron>>
  readonly calls: Effect.Effect<ReadonlyArray<MemoryCall>>
}

/** The handle of `AxonClient.layerMemory`. */
export class AxonMemory extends Context.Tag("neuron/AxonMemory")<AxonMemory, AxonMemoryHandle>() {}

const statusOf: Partial<Record<AxonErrorReason, number>> = {
  unauthorized: 401,
  not_registered: 404,
  not_supported: 404,
  conflict: 409,
  rejected: 400,
  server_error: 503
}

interface Held {
  registration_id: string
  organization_npi: string
  neuron_endpoint_url: string
  token: string
  heartbeats: number
  providers: Map<string, ProviderView>
}

/** Builds the in-memory registry and its handle. */
export const makeMemory = (options: AxonMemoryOptions = {}) =>
  Effect.gen(function*() {
    const url = options.url ?? "memory://axon"
    const neurons = new Map<string, Held>()
    const mode = yield* Ref.make<"up" | "unreachable" | "timeout" | "server_error">("up")
    const script = yield* Ref.make<ReadonlyArray<{ reason: AxonErrorReason; operation?: AxonOperation }>>([])
    const calls = yield* Ref.make<ReadonlyArray<MemoryCall>>([])
    let counter = 0

    const error = (operation: AxonOperation, reason: AxonErrorReason) => {
      const status = statusOf[reason]
      return new AxonError({
        reason,
        operation,
        url,
        message: `in-memory Axon registry: ${reason} (${operation})`,
        ...(status === undefined ? {} : { status })
      })
    }

    const scripted = (operation: AxonOperation) =>
      Effect.gen(function*() {
        const m = yield* Ref.get(mode)
        if (m !== "up") return Option.some(m)
        const queue = yield* Ref.get(script)
        const at = queue.findIndex((s) => s.operation === undefined || s.operation === operation)
        if (at < 0) return Option.none<AxonErrorReason>()
        yield* Ref.set(script, queue.filter((_, i) => i !== at))
        return Option.some(queue[at]!.reason)
      })

    /** Runs one call: the script first, then `body`; records how it ended. */
    const call = <A>(operation: AxonOperation, body: () => Effect.Effect<A, AxonErrorReason>) =>
      Effect.gen(function*() {
        const forced = yield* scripted(operation)
        const result = yield* Effect.either(Option.isSome(forced) ? Effect.fail(forced.value) : body())
        const outcome: MemoryCall["outcome"] = result._tag === "Right" ? "ok" : result.left
        yield* Ref.update(calls, (cs) => [...cs, { operation, outcome }])
        return yield* Effect.mapError(result, (reason) => error(operation, reason))
      })

    const authorized = (ref: RegistrationRef) => {
      const held = neurons.get(ref.registration_id)
      if (held === undefined) return Effect.fail<AxonErrorReason>("not_registered")
      if (held.token !== Redacted.value(ref.bearer_token)) return Effect.fail<AxonErrorReason>("unauthorized")
      return Effect.succeed(held)
    }

    const client: AxonClientService = {
      registerNeuron: (req) =>
        call("register", () => {
          const existing = [...neurons.values()].find((n) => n.organization_npi === req.organization_npi)
          if (existing !== undefined && options.enrollment !== true) return Effect.fail("conflict" as const)
          const token = `memory-token-${++counter}`
          const held: Held = existing ?? {
            registration_id: `memory-${counter}`,
            organization_npi: req.organization_npi,
            neuron_endpoint_url: req.neuron_endpoint_url,
            token,
            heartbeats: 0,
            providers: new Map()
          }
          held.token = token
          neurons.set(held.registration_id, held)
          const interval = req.heartbeat_interval_s ?? 60
          return Effect.succeed<Registration>({
            registration_id: held.registration_id,
            bearer_token: Redacted.make(token),
            heartbeat_interval_s: interval,
            ttl_s: options.ttl_s ?? 3 * interval,
            reregistered: existing !== undefined,
            axonUrl: url
          })
        }),
      updateEndpoint: (ref, endpoint) =>
        call("heartbeat", () =>
          Effect.flatMap(authorized(ref), (held) => {
            held.neuron_endpoint_url = endpoint
            held.heartbeats++
            return Effect.map(DateTime.now, (now) => ({ last_heartbeat_at: now }))
          })),
      registerProvider: (ref, provider) =>
        call("provider_add", () =>
          Effect.flatMap(authorized(ref), (held) =>
            Effect.map(DateTime.now, (now) => {
              const known = held.providers.get(provider.provider_npi)
              if (known !== undefined) return { provider_id: known.provider_id, alreadyRegistered: true }
              const view = {
                provider_npi: provider.provider_npi,
                provider_id: `provider-${++counter}`,
                provider_name: provider.provider_name ?? null,
                provider_endpoint_url: provider.provider_endpoint_url ?? null,
                registered_at: now
              } as ProviderView
              held.providers.set(provider.provider_npi, view)
              return { provider_id: view.provider_id, alreadyRegistered: false }
            }))),
      removeProvider: (ref, npi) =>
        call("provider_remove", () => Effect.map(authorized(ref), (held) => void held.providers.delete(npi))),
      listProviders: (ref) =>
        call("provider_list", () =>
          options.listing === false
            ? Effect.fail("not_supported" as const)
            : Effect.map(authorized(ref), (held) => [...held.providers.values()])),
      deregister: (ref) =>
        call("deregister", () => Effect.map(authorized(ref), (held) => void neurons.delete(held.registration_id))),
      currentUrl: Effect.succeed(url)
    }

    const each = (registration_id: string | undefined, f: (held: Held) => void) =>
      Effect.sync(() => {
        for (const held of [...neurons.values()]) {
          if (registration_id === undefined || held.registration_id === registration_id) f(held)
        }
      })

    const handle: AxonMemoryHandle = {
      setMode: (m) => Ref.set(mode, m),
      failNext: (reason, o) =>
        Ref.update(script, (queue) => [
          ...queue,
          ...Array.from({ length: o?.times ?? 1 }, () => ({
            reason,
            ...(o?.operation === undefined ? {} : { operation: o.operation })
          }))
        ]),
      dropRegistration: (id) => each(id, (held) => neurons.delete(held.registration_id)),
      forgetToken: (id) => each(id, (held) => (held.token = `forgotten-${++counter}`)),
      neurons: Effect.sync(() =>
        [...neurons.values()].map((n) => ({
          registration_id: n.registration_id,
          organization_npi: n.organization_npi,
          neuron_endpoint_url: n.neuron_endpoint_url,
          heartbeats: n.heartbeats,
          providers: [...n.providers.keys()]
        }))
      ),
      calls: Ref.get(calls)
    }
    return { client, handle }
  })
