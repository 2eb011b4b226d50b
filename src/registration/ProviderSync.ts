/**
 * Keeping the registry's provider list in step with the Neuron's: push a provider, pull a removed one, resume the
 * operations left in flight, and reconcile the whole list. Used by the admin API's calls, after every successful
 * heartbeat while operations are in flight (a crash or an away registry left them), after every registration (the
 * registry's list is then assumed empty) and by anti-entropy (diffing against the registry's own list, or
 * re-sending everything to a registry that cannot list, such as the public CareAgent Axon).
 *
 * The registry calls for one NPI run one at a time, each deciding on the provider as stored when it starts: an
 * operator's removal and a resume (or an anti-entropy round) sending the same provider would otherwise race, and
 * the loser would record an answer for a state that has moved on (a `ProviderRegistered` for a removed provider).
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type { RegistrationRef } from "../axon/AxonClient.js"
import { AxonClient } from "../axon/AxonClient.js"
import type { AxonError } from "../axon/AxonError.js"
import { isRetryable } from "../axon/AxonError.js"
import type { Npi } from "../domain/Npi.js"
import type { RegisterProviderRequest } from "../protocol/AxonApi.js"
import type { StorageUnavailable } from "../sql/StorageUnavailable.js"
import type { Provider } from "../store/Lifecycle.js"
import type { LifecycleError } from "../store/Lifecycle.js"
import type { StaleVersion } from "../store/RegistrationStore.js"
import { RegistrationStore } from "../store/RegistrationStore.js"

/** A store step whose only expected failure is storage: a refused transition is a defect (a bug). */
export const storing = <A, R>(
  effect: Effect.Effect<A, LifecycleError | StaleVersion | StorageUnavailable, R>
): Effect.Effect<A, StorageUnavailable, R> =>
  Effect.catchTags(effect, { LifecycleError: Effect.die, StaleVersion: Effect.die })

/** What one reconciliation did. */
export interface SyncReport {
  /**
   * `diff` when the registry listed its providers; `resend` when it could not (or after a registration); `resume`
   * when only the operations in flight were sent; `skipped` without a registration.
   */
  readonly mode: "diff" | "resend" | "resume" | "skipped"
  readonly added: ReadonlyArray<string>
  readonly removed: ReadonlyArray<string>
  readonly refused: ReadonlyArray<string>
}

/** How pushing one provider went: `away` means the registry stopped answering (stop for now). */
export type PushOutcome = "registered" | "refused" | "away"

const providerRequest = (p: Provider): RegisterProviderRequest => ({
  provider_npi: p.npi,
  ...(p.name === null ? {} : { provider_name: p.name }),
  ...(p.types === null ? {} : { provider_types: p.types }),
  ...(p.specialty === null ? {} : { specialty: p.specialty }),
  ...(p.endpoint_url === null ? {} : { provider_endpoint_url: p.endpoint_url })
})

/**
 * An operation in flight: a removal the registry has not confirmed, or a provider the registry has not received
 * (and has not refused: a refusal is an answer, retried by anti-entropy or when the operator changes the provider).
 */
export const isInFlight = (p: Provider): boolean =>
  p.status === "removing" || (p.status === "pending" && p.last_error === null)

/** Builds the operations on the registry client and the store. A lost registration fails them with its AxonError. */
export const make = Effect.gen(function*() {
  const client = yield* AxonClient
  const store = yield* RegistrationStore
  // One permit per NPI, made on first use and kept (one small object per provider this Neuron ever had).
  const locks = new Map<string, Effect.Semaphore>()
  const oneAtATime = (npi: string) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      let lock = locks.get(npi)
      if (lock === undefined) {
        lock = Effect.unsafeMakeSemaphore(1)
        locks.set(npi, lock)
      }
      return lock.withPermits(1)(effect)
    })

  /**
   * Registers one provider and records the answer; a refusal is kept as the provider's `last_error`. An answer
   * that cannot be stored (`StorageUnavailable`) leaves the provider as it was: the registry has it, and sending
   * it again is harmless (the add is idempotent).
   */
  const send = (ref: RegistrationRef, p: Provider): Effect.Effect<PushOutcome, AxonError | StorageUnavailable> =>
    client.registerProvider(ref, providerRequest(p)).pipe(
      Effect.flatMap((answer) =>
        store.markProviderRegistered(p.npi, answer.provider_id ?? p.provider_id ?? p.npi).pipe(
          storing,
          Effect.as<PushOutcome>("registered")
        )
      ),
      Effect.catchIf(
        (e) => e._tag === "AxonError" && e.reason === "rejected",
        (e) =>
          Effect.logWarning("the registry refused a provider").pipe(
            Effect.annotateLogs({ provider_npi: p.npi, reason: e.message }),
            Effect.zipRight(store.markProviderRefused(p.npi, e.message).pipe(storing)),
            Effect.as<PushOutcome>("refused")
          )
      ),
      Effect.catchIf(
        (e) => e._tag === "AxonError" && isRetryable(e),
        () => Effect.succeed<PushOutcome>("away")
      )
    )

  // Stops a reconciliation that cannot store what the registry answered; the next round takes it up again.
  const untilUnstorable = <A>(effect: Effect.Effect<A, AxonError | StorageUnavailable>) =>
    effect.pipe(
      Effect.map(Option.some),
      Effect.catchTag("StorageUnavailable", (e) =>
        Effect.logWarning("the registry's answer could not be stored; the next round sends it again").pipe(
          Effect.annotateLogs({ reason: e.reason }),
          Effect.as(Option.none<A>())
        ))
    )

  /**
   * Sends the provider as stored now, if it is still to be sent (`pending`, or `registered` for a re-send);
   * `skipped` when it has moved on meanwhile (removed, or being removed).
   */
  const push = (
    ref: RegistrationRef,
    npi: Npi
  ): Effect.Effect<PushOutcome | "skipped", AxonError | StorageUnavailable> =>
    Effect.flatMap(
      store.getProvider(npi),
      (stored) =>
        Option.isSome(stored) && (stored.value.status === "pending" || stored.value.status === "registered")
          ? send(ref, stored.value)
          : Effect.succeed("skipped" as const)
    ).pipe(oneAtATime(npi))

  /**
   * Removes one provider from the registry, then drops it locally, if it is still `removing` (an operator may have
   * added it again meanwhile). Answers whether it is removed now.
   */
  const pull = (ref: RegistrationRef, npi: Npi): Effect.Effect<boolean, AxonError | StorageUnavailable> =>
    Effect.flatMap(store.getProvider(npi), (stored) => {
      if (Option.isNone(stored) || stored.value.status === "removed") return Effect.succeed(true)
      if (stored.value.status !== "removing") return Effect.succeed(false)
      return client.removeProvider(ref, npi).pipe(
        Effect.zipRight(store.removeProvider(npi).pipe(storing)),
        Effect.as(true)
      )
    }).pipe(oneAtATime(npi))

  /**
   * Sends `providers` in order: each removal, and each other provider for which `resend` holds. Stops early,
   * without failing, when the registry stops answering a provider add; a removal that fails fails the whole.
   */
  const sendAll = (ref: RegistrationRef, providers: ReadonlyArray<Provider>, resend: (p: Provider) => boolean) =>
    Effect.gen(function*() {
      const added: Array<string> = []
      const refused: Array<string> = []
      const removed: Array<string> = []
      for (const p of providers) {
        if (p.status === "removing") {
          const gone = yield* untilUnstorable(pull(ref, p.npi))
          if (Option.isNone(gone)) break
          if (gone.value) removed.push(p.npi)
        } else if (resend(p)) {
          const outcome = yield* untilUnstorable(push(ref, p.npi))
          if (Option.isNone(outcome) || outcome.value === "away") break
          if (outcome.value !== "skipped") (outcome.value === "registered" ? added : refused).push(p.npi)
        }
      }
      return { added, refused, removed }
    })

  /**
   * Makes the registry's list match the local one. `remote` is the registry's list when it gave one: then only
   * what is missing or pending is sent, and what the Neuron no longer has is removed. Without it every provider
   * is sent (the add is idempotent).
   */
  const reconcile = (ref: RegistrationRef, remote: Option.Option<ReadonlySet<string>>) =>
    Effect.gen(function*() {
      const local = yield* store.listProviders()
      const { added, refused, removed } = yield* sendAll(
        ref,
        local,
        (p) => Option.isNone(remote) || p.status === "pending" || !remote.value.has(p.npi)
      )
      if (Option.isSome(remote)) {
        const wanted = new Set<string>(local.filter((p) => p.status !== "removing").map((p) => p.npi))
        for (const npi of remote.value) {
          if (wanted.has(npi) || removed.includes(npi)) continue
          // Unknown here when the listing was read; the operator may have added it since.
          const now = yield* store.getProvider(npi as Npi)
          if (Option.isSome(now) && (now.value.status === "pending" || now.value.status === "registered")) continue
          yield* client.removeProvider(ref, npi as Npi).pipe(oneAtATime(npi))
          removed.push(npi)
        }
      }
      return { mode: Option.isSome(remote) ? "diff" : "resend", added, removed, refused } satisfies SyncReport
    })

  /**
   * Sends only the operations in flight (`isInFlight`), without listing the registry's providers: what a crash or
   * an away registry left, sent as soon as the registry answers.
   */
  const resume = (ref: RegistrationRef) =>
    Effect.gen(function*() {
      const inFlight = (yield* store.listProviders()).filter(isInFlight)
      return { mode: "resume", ...(yield* sendAll(ref, inFlight, () => true)) } satisfies SyncReport
    })

  /** Whether any provider operation is in flight. */
  const inFlight = Effect.map(store.listProviders(), (all) => all.some(isInFlight))

  /** Anti-entropy for one registration: diff against the registry's list, or re-send when it cannot list. */
  const sync = (ref: RegistrationRef): Effect.Effect<SyncReport, AxonError> =>
    client.listProviders(ref).pipe(
      Effect.map((listing) => Option.some(new Set<string>(listing.map((p) => p.provider_npi)))),
      Effect.catchIf((e) => e.reason === "not_supported", () => Effect.succeedNone),
      Effect.flatMap((remote) => reconcile(ref, remote))
    )

  return { push, pull, reconcile, resume, inFlight, sync } as const
})
