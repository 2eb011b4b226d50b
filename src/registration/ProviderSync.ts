/**
 * Keeping the registry's provider list in step with the Neuron's: push a provider, pull a removed one, and
 * reconcile the whole list. Used after every registration (the registry's list is then assumed empty) and by
 * anti-entropy (diffing against the registry's own list, or re-sending everything to a registry that cannot
 * list, such as the public CareAgent Axon).
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
  /** `diff` when the registry listed its providers; `resend` when it could not (or after a registration). */
  readonly mode: "diff" | "resend" | "skipped"
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

/** Builds the operations on the registry client and the store. A lost registration fails them with its AxonError. */
export const make = Effect.gen(function*() {
  const client = yield* AxonClient
  const store = yield* RegistrationStore

  /**
   * Registers one provider and records the answer; a refusal is kept as the provider's `last_error`. An answer
   * that cannot be stored (`StorageUnavailable`) leaves the provider as it was: the registry has it, and sending
   * it again is harmless (the add is idempotent).
   */
  const push = (ref: RegistrationRef, p: Provider): Effect.Effect<PushOutcome, AxonError | StorageUnavailable> =>
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

  /** Removes one provider from the registry, then drops it locally. */
  const pull = (ref: RegistrationRef, npi: Npi): Effect.Effect<void, AxonError | StorageUnavailable> =>
    client.removeProvider(ref, npi).pipe(Effect.zipRight(store.removeProvider(npi).pipe(storing)))

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
   * Makes the registry's list match the local one. `remote` is the registry's list when it gave one: then only
   * what is missing or pending is sent, and what the Neuron no longer has is removed. Without it every provider
   * is sent (the add is idempotent). Stops early, without failing, when the registry stops answering.
   */
  const reconcile = (ref: RegistrationRef, remote: Option.Option<ReadonlySet<string>>) =>
    Effect.gen(function*() {
      const added: Array<string> = []
      const refused: Array<string> = []
      const removed: Array<string> = []
      const local = yield* store.listProviders()
      for (const p of local) {
        if (p.status === "removing") {
          if (Option.isNone(yield* untilUnstorable(pull(ref, p.npi)))) break
          removed.push(p.npi)
        } else if (Option.isNone(remote) || p.status === "pending" || !remote.value.has(p.npi)) {
          const outcome = yield* untilUnstorable(push(ref, p))
          if (Option.isNone(outcome) || outcome.value === "away") break
          ;(outcome.value === "registered" ? added : refused).push(p.npi)
        }
      }
      if (Option.isSome(remote)) {
        const wanted = new Set<string>(local.filter((p) => p.status !== "removing").map((p) => p.npi))
        for (const npi of remote.value) {
          if (wanted.has(npi) || removed.includes(npi)) continue
          yield* client.removeProvider(ref, npi as Npi)
          removed.push(npi)
        }
      }
      return { mode: Option.isSome(remote) ? "diff" : "resend", added, removed, refused } satisfies SyncReport
    })

  /** Anti-entropy for one registration: diff against the registry's list, or re-send when it cannot list. */
  const sync = (ref: RegistrationRef): Effect.Effect<SyncReport, AxonError> =>
    client.listProviders(ref).pipe(
      Effect.map((listing) => Option.some(new Set<string>(listing.map((p) => p.provider_npi)))),
      Effect.catchIf((e) => e.reason === "not_supported", () => Effect.succeedNone),
      Effect.flatMap((remote) => reconcile(ref, remote))
    )

  return { push, pull, reconcile, sync } as const
})
