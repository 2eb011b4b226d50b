/**
 * The lifecycle's state: registration and provider states, the snapshot shapes, and `LifecycleError`.
 * Pure data; the transitions are in `Lifecycle.ts`, which re-exports all of this.
 */
import * as Schema from "effect/Schema"
import { Npi } from "../domain/Npi.js"

/** Where the Neuron's registration with the registry stands. */
export const RegistrationState = Schema.Literal(
  "unregistered",
  "registering",
  "registered",
  "lost",
  "conflict",
  "deregistering",
  "deregistered"
)
/** @see RegistrationState */
export type RegistrationState = typeof RegistrationState.Type

/** Where one provider stands; `removed` is a tombstone kept so its version and history continue. */
export const ProviderStatus = Schema.Literal("pending", "registered", "removing", "removed")
/** @see ProviderStatus */
export type ProviderStatus = typeof ProviderStatus.Type

const Version = Schema.NonNegativeInt
const NullableText = Schema.NullOr(Schema.String)

/** The registration as the events describe it (the store adds the token and the last heartbeat). */
export const RegistrationSnapshot = Schema.Struct({
  state: RegistrationState,
  /** Number of registration events applied: the optimistic-concurrency version. */
  version: Version,
  registration_id: NullableText,
  axon_url: NullableText,
  heartbeat_interval_s: Schema.NullOr(Schema.Int),
  ttl_s: Schema.NullOr(Schema.Int),
  organization_npi: Schema.NullOr(Npi),
  organization_name: NullableText,
  organization_type: NullableText,
  endpoint_url: NullableText,
  /** Why the registration is `lost`, `conflict` or `deregistered`, in the registry's words when it gave some. */
  last_error: NullableText,
  updated_at: NullableText
})
/** @see RegistrationSnapshot */
export type RegistrationSnapshot = typeof RegistrationSnapshot.Type

/** One provider of the organization. */
export const Provider = Schema.Struct({
  npi: Npi,
  status: ProviderStatus,
  /** Number of events applied to this provider: its optimistic-concurrency version. */
  version: Version,
  provider_id: NullableText,
  name: NullableText,
  types: Schema.NullOr(Schema.Array(Schema.String)),
  specialty: NullableText,
  endpoint_url: NullableText,
  /** The registry's last refusal, until the provider is registered. */
  last_error: NullableText,
  created_at: Schema.String,
  updated_at: Schema.String
})
/** @see Provider */
export type Provider = typeof Provider.Type

/** The whole lifecycle state: the registration and every provider ever added (removed ones as tombstones). */
export interface NeuronState {
  readonly registration: RegistrationSnapshot
  readonly providers: ReadonlyMap<string, Provider>
}

/**
 * A refused event. `invalid_transition`: no such edge, or a guard failed; `unknown_provider`: a provider
 * event for an NPI never added; `missing_token`: `Registered` without its bearer token (store);
 * `invalid_event`: an event's field is invalid (store, when building it from loose input).
 */
export class LifecycleError extends Schema.TaggedError<LifecycleError>()("LifecycleError", {
  reason: Schema.Literal("invalid_transition", "unknown_provider", "missing_token", "invalid_event"),
  state: Schema.String,
  event: Schema.String,
  message: Schema.String
}) {}

/** The state of a Neuron that has never registered. */
export const initial: NeuronState = {
  registration: {
    state: "unregistered",
    version: 0,
    registration_id: null,
    axon_url: null,
    heartbeat_interval_s: null,
    ttl_s: null,
    organization_npi: null,
    organization_name: null,
    organization_type: null,
    endpoint_url: null,
    last_error: null,
    updated_at: null
  },
  providers: new Map()
}
