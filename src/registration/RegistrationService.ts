/**
 * The registration engine's orchestrator: it registers the organization once, re-registers when the registry
 * has lost it, keeps the registry's provider list in step with the local one, and records every change in the
 * RegistrationStore first, so that an operator's request survives the registry being away and the process restarting.
 * Calls that change the registration run one at a time (a semaphore), so a lost registration is registered
 * again exactly once however many callers notice it.
 */
import * as Context from "effect/Context"
import * as DateTime from "effect/DateTime"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Schema from "effect/Schema"
import type { RegistrationRef } from "../axon/AxonClient.js"
import { AxonClient } from "../axon/AxonClient.js"
import type { AxonError } from "../axon/AxonError.js"
import { isConflict, isRegistrationLost } from "../axon/AxonError.js"
import type { Npi } from "../domain/Npi.js"
import { NeuronHealth } from "../health/NeuronHealth.js"
import type { RegisterProviderRequest } from "../protocol/AxonApi.js"
import type { StorageUnavailable } from "../sql/StorageUnavailable.js"
import type { Provider } from "../store/Lifecycle.js"
import { RegistrationStore } from "../store/RegistrationStore.js"
import type { Registration } from "../store/Snapshot.js"
import * as ProviderSync from "./ProviderSync.js"
import type { SyncReport } from "./ProviderSync.js"

/** Who this Neuron is, as announced to the registry. */
export interface NeuronIdentity {
  readonly organization_npi: Npi
  readonly organization_name: string
  readonly organization_type: string
  /** The public URL announced as `neuron_endpoint_url` (and sent with every heartbeat). */
  readonly endpoint_url: string
  readonly heartbeat_interval_s: number
}

/** `DELETE /v1/providers/{npi}` for an NPI this Neuron does not have. */
export class ProviderNotFound extends Schema.TaggedError<ProviderNotFound>()("ProviderNotFound", {
  provider_npi: Schema.String,
  message: Schema.String
}) {}

const refOf = (reg: Registration): Option.Option<RegistrationRef> =>
  reg.state === "registered" && reg.registration_id !== null && reg.bearer_token !== null
    ? Option.some({ registration_id: reg.registration_id, bearer_token: reg.bearer_token })
    : Option.none()

/** Builds the service; needs the identity, the registry client, the store and the health status. */
export const make = (identity: NeuronIdentity) =>
  Effect.gen(function*() {
    const client = yield* AxonClient
    const store = yield* RegistrationStore
    const health = yield* NeuronHealth
    const providers = yield* ProviderSync.make
    const lock = yield* Effect.makeSemaphore(1)
    const wakeups = yield* Queue.sliding<void>(1)
    const syncRequests = yield* Queue.sliding<void>(1)
    const resumeRequests = yield* Queue.sliding<void>(1)
    const exclusive = lock.withPermits(1)

    const showState = (reg: Registration) => health.update({ registration: reg.state }).pipe(Effect.as(reg))

    /** The registry no longer knows this registration: record it (once) and wake the heartbeat to register again. */
    const markLost = (ref: RegistrationRef, error: AxonError) =>
      Effect.gen(function*() {
        const reg = yield* store.current
        if (reg.state !== "registered" || reg.registration_id !== ref.registration_id) return
        yield* Effect.logWarning("the registry no longer knows this registration; registering again").pipe(
          Effect.annotateLogs({ registration_id: ref.registration_id, status: error.status ?? null })
        )
        yield* store.markLost(reg.version, error.message).pipe(Effect.flatMap(showState), Effect.orDie)
        yield* wakeups.offer(undefined)
      }).pipe(exclusive)

    /** A write after the registry answered could not be stored: logged; the next round (or beat) makes it again. */
    const unstored = (e: StorageUnavailable) =>
      Effect.logWarning("the registry answered; its answer could not be stored, the next round stores it").pipe(
        Effect.annotateLogs({ reason: e.reason })
      )

    /** For a call made after the operator's request was stored: logged or recorded, never failing the request. */
    const afterStored = (ref: RegistrationRef) => (e: AxonError | StorageUnavailable) =>
      e._tag === "StorageUnavailable" ? unstored(e) : noteIfLost(ref)(e)

    /** For a registry call made with `ref`: a lost registration is recorded; other failures are left as they are. */
    const noteIfLost = (ref: RegistrationRef) => (e: AxonError) =>
      isRegistrationLost(e) ? markLost(ref, e) : Effect.void

    const organization = {
      organization_npi: identity.organization_npi,
      organization_name: identity.organization_name,
      organization_type: identity.organization_type,
      endpoint_url: identity.endpoint_url
    }
    const startRegistration = (version: number) =>
      store.startRegistration(version, organization).pipe(Effect.flatMap(showState), Effect.orDie)

    /** Calls the registry's DELETE and records the end of the registration (a 404 means it is already gone). */
    const completeDeregistration = (reg: Registration, ref: RegistrationRef) =>
      client.deregister(ref).pipe(
        Effect.catchIf((e) => e.reason === "not_supported" || e.reason === "not_registered", () => Effect.void),
        Effect.zipRight(store.recordDeregistered(reg.version).pipe(Effect.flatMap(showState), Effect.orDie))
      )

    /**
     * Registers when there is no usable registration and returns the one to use. `automatic` (the heartbeat)
     * leaves a registration the operator ended alone: None while `deregistered`.
     */
    const register = (automatic: boolean): Effect.Effect<Option.Option<RegistrationRef>, AxonError> =>
      Effect.gen(function*() {
        let reg = yield* store.current
        const existing = refOf(reg)
        if (Option.isSome(existing)) return existing
        if (reg.state === "deregistering" && reg.registration_id !== null && reg.bearer_token !== null) {
          // A deregistration a crash interrupted: finish it.
          yield* completeDeregistration(reg, { registration_id: reg.registration_id, bearer_token: reg.bearer_token })
          reg = yield* store.current
        }
        if (automatic && (reg.state === "deregistered" || reg.state === "deregistering")) return Option.none()
        // A conflict waits for the operator: try again without writing an event per attempt.
        if (reg.state !== "registering" && reg.state !== "conflict") reg = yield* startRegistration(reg.version)
        const answer = yield* client.registerNeuron({
          organization_npi: identity.organization_npi,
          organization_name: identity.organization_name,
          organization_type: identity.organization_type,
          neuron_endpoint_url: identity.endpoint_url,
          heartbeat_interval_s: identity.heartbeat_interval_s
        }).pipe(
          Effect.tapError((e) =>
            isConflict(e) && reg.state === "registering"
              ? store.markConflict(reg.version, e.message).pipe(Effect.flatMap(showState), Effect.orDie)
              : Effect.void
          )
        )
        if (reg.state === "conflict") reg = yield* startRegistration(reg.version)
        reg = yield* store.recordRegistered(reg.version, {
          registration_id: answer.registration_id,
          bearer_token: answer.bearer_token,
          heartbeat_interval_s: answer.heartbeat_interval_s,
          ttl_s: answer.ttl_s,
          axon_url: answer.axonUrl
        }).pipe(Effect.flatMap(showState), Effect.orDie)
        yield* Effect.logInfo(answer.reregistered ? "registration renewed with the registry" : "registered").pipe(
          Effect.annotateLogs({ registration_id: answer.registration_id, axon_url: answer.axonUrl })
        )
        const ref = Option.getOrThrow(refOf(reg))
        const sent = yield* providers.reconcile(ref, Option.none())
        if (sent.added.length + sent.refused.length > 0) {
          yield* Effect.logInfo("providers sent to the registry").pipe(
            Effect.annotateLogs({ registered: sent.added.length, refused: sent.refused.length })
          )
        }
        return Option.some(ref)
      }).pipe(exclusive, Effect.withSpan("RegistrationService.register"))

    /**
     * One heartbeat: registers first when needed; a lost registration is registered again and beaten at once.
     * `idle` when the operator has deregistered this Neuron: nothing to beat for.
     */
    const beat: Effect.Effect<"beat" | "idle", AxonError> = Effect.gen(function*() {
      const first = yield* register(true)
      if (Option.isNone(first)) return "idle" as const
      let ref = first.value
      let answer = yield* Effect.either(client.updateEndpoint(ref, identity.endpoint_url))
      if (Either.isLeft(answer) && isRegistrationLost(answer.left)) {
        yield* markLost(ref, answer.left)
        yield* Queue.takeAll(wakeups) // this beat re-registers now: no second wake-up for the same loss
        const again = yield* register(true)
        if (Option.isNone(again)) return "idle" as const
        ref = again.value
        answer = yield* Effect.either(client.updateEndpoint(ref, identity.endpoint_url))
      }
      if (Either.isLeft(answer)) return yield* answer.left
      const at = yield* DateTime.now
      // The registry has the beat: a time that cannot be stored (disk full, database locked) does not undo it.
      yield* store.touchHeartbeat(at).pipe(Effect.catchAll(unstored))
      yield* health.recordSuccess({ registration: "registered", last_heartbeat_at: DateTime.formatIso(at) })
      // A registry that answers the heartbeat answers provider calls: what a crash or an outage left in flight goes
      // now (the first beat after a start or a recovery), not at the next anti-entropy round.
      if (yield* providers.inFlight) yield* resumeRequests.offer(undefined)
      return "beat" as const
    }).pipe(Effect.withSpan("RegistrationService.beat"))

    /**
     * Stores the provider first (pending), then tells the registry when it can. `StorageUnavailable` when it
     * cannot be stored: nothing was written and the registry was not called.
     */
    const addProvider = (input: RegisterProviderRequest): Effect.Effect<Provider, StorageUnavailable> =>
      Effect.gen(function*() {
        const stored = yield* store.addProvider({
          npi: input.provider_npi,
          ...(input.provider_name === undefined ? {} : { name: input.provider_name }),
          ...(input.provider_types === undefined ? {} : { types: input.provider_types }),
          ...(input.specialty === undefined ? {} : { specialty: input.specialty }),
          ...(input.provider_endpoint_url === undefined ? {} : { endpoint_url: input.provider_endpoint_url })
        }).pipe(ProviderSync.storing)
        const ref = refOf(yield* store.current)
        if (stored.status === "registered" || Option.isNone(ref)) return stored
        // Stored: from here the request is kept whatever happens (the next round sends what is still pending).
        yield* providers.push(ref.value, stored.npi).pipe(Effect.catchAll(afterStored(ref.value)))
        return Option.getOrElse(yield* store.getProvider(stored.npi), () => stored)
      }).pipe(Effect.withSpan("RegistrationService.addProvider"))

    /**
     * Marks the provider `removing` (it is no longer served), then removes it from the registry when it can.
     * `StorageUnavailable` when the removal cannot be stored: nothing changed.
     */
    const removeProvider = (npi: Npi): Effect.Effect<"removed" | "removing", ProviderNotFound | StorageUnavailable> =>
      Effect.gen(function*() {
        const existing = yield* store.getProvider(npi)
        if (Option.isNone(existing) || existing.value.status === "removed") {
          return yield* new ProviderNotFound({ provider_npi: npi, message: `no provider ${npi} on this Neuron` })
        }
        yield* store.requestProviderRemoval(npi).pipe(ProviderSync.storing)
        const ref = refOf(yield* store.current)
        if (Option.isNone(ref)) return "removing" as const
        return yield* providers.pull(ref.value, npi).pipe(
          Effect.map((gone) => gone ? "removed" as const : "removing" as const),
          Effect.catchAll((e) => afterStored(ref.value)(e).pipe(Effect.as("removing" as const)))
        )
      }).pipe(Effect.withSpan("RegistrationService.removeProvider"))

    /** Runs a provider round on the current registration (`skipped` without one); a lost registration is noted. */
    const providerRound = (round: (ref: RegistrationRef) => Effect.Effect<SyncReport, AxonError>) =>
      Effect.gen(function*() {
        const ref = refOf(yield* store.current)
        if (Option.isNone(ref)) return { mode: "skipped", added: [], removed: [], refused: [] } satisfies SyncReport
        return yield* round(ref.value).pipe(Effect.tapError(noteIfLost(ref.value)))
      })

    /**
     * Anti-entropy: makes the registry's provider list match the local one. Diffs when the registry can list
     * providers; otherwise re-sends every provider (the add is idempotent).
     */
    const syncProviders = providerRound(providers.sync).pipe(Effect.withSpan("RegistrationService.syncProviders"))

    /**
     * Sends the provider operations left in flight (`pending`, `removing`) without listing the registry's
     * providers: what a crash in the middle of a call, or an away registry, left behind.
     */
    const resumeProviders = providerRound(providers.resume).pipe(
      Effect.withSpan("RegistrationService.resumeProviders")
    )

    /**
     * Leaves the registry on purpose: the registration ends and the heartbeat idles until `register` is called
     * (also across restarts).
     */
    const deregister: Effect.Effect<void, AxonError> = Effect.gen(function*() {
      const reg = yield* store.current
      const ref = refOf(reg)
      if (Option.isNone(ref)) return
      const next = yield* store.startDeregistration(reg.version, "operator").pipe(Effect.orDie)
      yield* completeDeregistration(next, ref.value)
    }).pipe(exclusive, Effect.withSpan("RegistrationService.deregister"))

    return {
      identity,
      current: store.current,
      /** Registers now if there is no usable registration (also after a deliberate deregistration). */
      register: register(false).pipe(Effect.tap(() => wakeups.offer(undefined))),
      beat,
      addProvider,
      removeProvider,
      listProviders: store.listProviders(),
      getProvider: store.getProvider,
      getProviderCached: store.getProviderCached,
      syncProviders,
      resumeProviders,
      deregister,
      /** Taken by the heartbeat loop: something found the registration lost and wants it registered again now. */
      wakeups: wakeups as Queue.Dequeue<void>,
      /** Asks the anti-entropy loop for a round now (after a recovery). */
      requestSync: syncRequests.offer(undefined).pipe(Effect.asVoid),
      syncRequests: syncRequests as Queue.Dequeue<void>,
      /** Taken by the resume loop: a heartbeat succeeded while provider operations are in flight. */
      resumeRequests: resumeRequests as Queue.Dequeue<void>
    } as const
  })

/** The registration engine's orchestrator. */
export class RegistrationService extends Context.Tag("neuron/RegistrationService")<
  RegistrationService,
  Effect.Effect.Success<ReturnType<typeof make>>
>() {
  /** The service for one identity, on the host's AxonClient, RegistrationStore and NeuronHealth. */
  static readonly layer = (identity: NeuronIdentity) => Layer.effect(RegistrationService, make(identity))
}
