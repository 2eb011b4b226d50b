/**
 * The registration lifecycle as a pure state machine: states, the transition tables with their guards,
 * and `apply`, a fold over `LifecycleEvent`s, so that the state can be rebuilt by replaying the event log.
 * No I/O and no clock here: the event's time is given by the caller.
 */
import * as Either from "effect/Either"
import type { LifecycleEvent, ProviderEvent, RegistrationEvent } from "./LifecycleEvent.js"
import { isProviderEvent } from "./LifecycleEvent.js"
import type { NeuronState, ProviderStatus, RegistrationSnapshot } from "./LifecycleState.js"
import { initial, LifecycleError, type Provider, type RegistrationState } from "./LifecycleState.js"

export * from "./LifecycleState.js"

type Edges<S extends string, E extends { readonly _tag: string }> = {
  readonly [K in S]: { readonly [T in E["_tag"]]?: RegistrationState | ProviderStatus }
}

/** Registration edges: from a state, which event leads where. Anything not listed is `invalid_transition`. */
export const registrationTransitions: Edges<RegistrationState, RegistrationEvent> = {
  unregistered: { RegistrationStarted: "registering" },
  // A retried registration call stays `registering` without a new event: the backoff loop owns retries.
  registering: { Registered: "registered", ConflictDetected: "conflict" },
  // RegistrationStarted from `registered`: a deliberate re-registration (e.g. the organization changed).
  registered: { RegistrationLost: "lost", Deregistering: "deregistering", RegistrationStarted: "registering" },
  lost: { RegistrationStarted: "registering" },
  conflict: { RegistrationStarted: "registering" },
  deregistering: { Deregistered: "deregistered" },
  deregistered: { RegistrationStarted: "registering" }
}

/**
 * Provider edges; `absent` is a provider never added. A repeat that changes nothing (the same details
 * added again, a second removal request) is allowed and `apply` returns the state unchanged.
 * Guard: `ProviderRegistered` needs the registration to be `registered` (only then can a provider id exist).
 */
export const providerTransitions: Edges<ProviderStatus | "absent", ProviderEvent> = {
  absent: { ProviderAdded: "pending" },
  pending: {
    ProviderAdded: "pending",
    ProviderRegistered: "registered",
    ProviderRefused: "pending",
    ProviderRemovalRequested: "removing"
  },
  // Added again with other details: back to `pending` so that the registry receives them.
  registered: {
    ProviderAdded: "pending",
    ProviderRegistered: "registered",
    ProviderRefused: "pending",
    ProviderRemovalRequested: "removing"
  },
  // Added while removing: the operator changed their mind; the removal is cancelled.
  removing: { ProviderAdded: "pending", ProviderRemovalRequested: "removing", ProviderRemoved: "removed" },
  removed: { ProviderAdded: "pending", ProviderRemovalRequested: "removed", ProviderRemoved: "removed" }
}

const refuse = (
  reason: LifecycleError["reason"],
  state: string,
  event: string,
  message = `${event} is not allowed in state ${state}`
) => Either.left(new LifecycleError({ reason, state, event, message }))

const applyRegistration = (
  state: NeuronState,
  event: RegistrationEvent,
  at: string
): Either.Either<NeuronState, LifecycleError> => {
  const r = state.registration
  const to = registrationTransitions[r.state][event._tag] as RegistrationState | undefined
  if (to === undefined) return refuse("invalid_transition", r.state, event._tag)
  const base = { ...r, state: to, version: r.version + 1, updated_at: at }
  let next: RegistrationSnapshot
  switch (event._tag) {
    case "RegistrationStarted":
      next = {
        ...base,
        organization_npi: event.organization_npi,
        organization_name: event.organization_name,
        organization_type: event.organization_type,
        endpoint_url: event.endpoint_url,
        last_error: null
      }
      break
    case "Registered":
      next = {
        ...base,
        registration_id: event.registration_id,
        heartbeat_interval_s: event.heartbeat_interval_s,
        ttl_s: event.ttl_s,
        axon_url: event.axon_url,
        last_error: null
      }
      break
    case "RegistrationLost":
      next = { ...base, last_error: event.reason }
      break
    case "ConflictDetected":
      next = { ...base, last_error: event.message }
      break
    case "Deregistering":
      next = { ...base, last_error: null }
      break
    case "Deregistered":
      next = {
        ...base,
        registration_id: null,
        heartbeat_interval_s: null,
        ttl_s: null,
        last_error: event.reason ?? null
      }
      break
  }
  return Either.right({ registration: next, providers: state.providers })
}

const sameList = (a: ReadonlyArray<string> | null, b: ReadonlyArray<string> | null) =>
  a === b || (a !== null && b !== null && a.length === b.length && a.every((x, i) => x === b[i]))

/** Everything but the version and the time: what decides whether an event changed a provider. */
const sameProvider = (a: Provider, b: Provider) =>
  a.status === b.status && a.provider_id === b.provider_id && a.name === b.name && sameList(a.types, b.types) &&
  a.specialty === b.specialty && a.endpoint_url === b.endpoint_url && a.last_error === b.last_error

const applyProvider = (
  state: NeuronState,
  event: ProviderEvent,
  at: string
): Either.Either<NeuronState, LifecycleError> => {
  const current = state.providers.get(event.npi)
  const from = current?.status ?? "absent"
  if (current === undefined && event._tag !== "ProviderAdded") {
    return refuse("unknown_provider", from, event._tag, `provider ${event.npi} is unknown`)
  }
  const edge = providerTransitions[from][event._tag] as ProviderStatus | undefined
  if (edge === undefined) return refuse("invalid_transition", from, event._tag)
  if (event._tag === "ProviderRegistered" && state.registration.state !== "registered") {
    return refuse(
      "invalid_transition",
      from,
      event._tag,
      `ProviderRegistered needs a registered Neuron (registration is ${state.registration.state})`
    )
  }
  const before: Provider = current ?? {
    npi: event.npi,
    status: "pending",
    version: 0,
    provider_id: null,
    name: null,
    types: null,
    specialty: null,
    endpoint_url: null,
    last_error: null,
    created_at: at,
    updated_at: at
  }
  const base: Provider = { ...before, status: edge }
  let next: Provider
  switch (event._tag) {
    case "ProviderAdded": {
      const details = {
        name: event.name ?? null,
        types: event.types ?? null,
        specialty: event.specialty ?? null,
        endpoint_url: event.endpoint_url ?? null
      }
      const unchanged = current !== undefined && (from === "pending" || from === "registered") &&
        sameProvider(current, { ...current, ...details })
      next = unchanged ? current : { ...base, ...details, last_error: null }
      break
    }
    case "ProviderRegistered":
      next = { ...base, provider_id: event.provider_id, last_error: null }
      break
    case "ProviderRefused":
      next = { ...base, last_error: event.message }
      break
    case "ProviderRemovalRequested":
    case "ProviderRemoved":
      next = base
      break
  }
  if (current !== undefined && sameProvider(current, next)) return Either.right(state)
  const providers = new Map(state.providers)
  providers.set(event.npi, { ...next, version: before.version + 1, updated_at: at })
  return Either.right({ registration: state.registration, providers })
}

/**
 * Applies one event that happened at `at` (ISO-8601). Returns the very same `state` object when the
 * event changes nothing (an idempotent repeat), so that callers can skip writing it.
 */
export const apply = (
  state: NeuronState,
  event: LifecycleEvent,
  at: string
): Either.Either<NeuronState, LifecycleError> =>
  isProviderEvent(event) ? applyProvider(state, event, at) : applyRegistration(state, event, at)

/** Folds a whole event log, starting from `initial`; the first refused event stops it. */
export const replay = (
  events: Iterable<{ readonly event: LifecycleEvent; readonly at: string }>,
  from: NeuronState = initial
): Either.Either<NeuronState, LifecycleError> => {
  let state = from
  for (const { at, event } of events) {
    const next = apply(state, event, at)
    if (Either.isLeft(next)) return next
    state = next.right
  }
  return Either.right(state)
}

/** The version of the stream an event belongs to, in `state` (0 for a provider never added). */
export const versionOf = (state: NeuronState, event: LifecycleEvent): number =>
  isProviderEvent(event) ? state.providers.get(event.npi)?.version ?? 0 : state.registration.version
