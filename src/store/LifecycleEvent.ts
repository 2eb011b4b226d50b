/**
 * The facts the Neuron records about its registration and its providers. Events are data: each is a
 * tagged Schema class, stored as JSON in `lifecycle_events`, and folded by `Lifecycle.apply`.
 * No event carries a secret: the bearer token travels beside `Registered`, never inside it.
 */
import * as Schema from "effect/Schema"
import { Npi } from "../domain/Npi.js"

const Text = Schema.String.pipe(Schema.minLength(1))
const Seconds = Schema.Int.pipe(Schema.positive())

/** The Neuron starts (or restarts) registering the organization at `endpoint_url`. */
export class RegistrationStarted extends Schema.TaggedClass<RegistrationStarted>()("RegistrationStarted", {
  organization_npi: Npi,
  organization_name: Text,
  organization_type: Text,
  endpoint_url: Text
}) {}

/** The registry accepted the registration. The bearer token is stored beside this event, never in it. */
export class Registered extends Schema.TaggedClass<Registered>()("Registered", {
  registration_id: Text,
  heartbeat_interval_s: Seconds,
  ttl_s: Seconds,
  axon_url: Text
}) {}

/** The registry no longer knows the registration (401/404 on a beat or a provider call, or a lost token). */
export class RegistrationLost extends Schema.TaggedClass<RegistrationLost>()("RegistrationLost", {
  reason: Text
}) {}

/** The registry refused the registration in a way retrying cannot fix (409, or 400 "already registered"). */
export class ConflictDetected extends Schema.TaggedClass<ConflictDetected>()("ConflictDetected", {
  message: Text
}) {}

/** The Neuron is deregistering itself. */
export class Deregistering extends Schema.TaggedClass<Deregistering>()("Deregistering", {}) {}

/** The registration is over; `reason` says why when it did not end with the registry's 204. */
export class Deregistered extends Schema.TaggedClass<Deregistered>()("Deregistered", {
  reason: Schema.optional(Text)
}) {}

/** The operator asked for a provider; it is `pending` until the registry has it. */
export class ProviderAdded extends Schema.TaggedClass<ProviderAdded>()("ProviderAdded", {
  npi: Npi,
  name: Schema.optional(Text),
  types: Schema.optional(Schema.Array(Text)),
  specialty: Schema.optional(Text),
  endpoint_url: Schema.optional(Text)
}) {}

/** The registry holds the provider under `provider_id`. */
export class ProviderRegistered extends Schema.TaggedClass<ProviderRegistered>()("ProviderRegistered", {
  npi: Npi,
  provider_id: Text
}) {}

/** The registry refused the provider; `message` is its answer, kept as the provider's last error. */
export class ProviderRefused extends Schema.TaggedClass<ProviderRefused>()("ProviderRefused", {
  npi: Npi,
  message: Text
}) {}

/** The operator asked to remove the provider; it is `removing` until the registry has dropped it. */
export class ProviderRemovalRequested extends Schema.TaggedClass<ProviderRemovalRequested>()(
  "ProviderRemovalRequested",
  { npi: Npi }
) {}

/** The registry no longer lists the provider; it is kept as a `removed` tombstone. */
export class ProviderRemoved extends Schema.TaggedClass<ProviderRemoved>()("ProviderRemoved", {
  npi: Npi
}) {}

/** Events about the registration itself. */
export const RegistrationEvent = Schema.Union(
  RegistrationStarted,
  Registered,
  RegistrationLost,
  ConflictDetected,
  Deregistering,
  Deregistered
)
/** @see RegistrationEvent */
export type RegistrationEvent = typeof RegistrationEvent.Type

/** Events about one provider (named by `npi`). */
export const ProviderEvent = Schema.Union(
  ProviderAdded,
  ProviderRegistered,
  ProviderRefused,
  ProviderRemovalRequested,
  ProviderRemoved
)
/** @see ProviderEvent */
export type ProviderEvent = typeof ProviderEvent.Type

/** Every lifecycle event. */
export const LifecycleEvent = Schema.Union(RegistrationEvent, ProviderEvent)
/** @see LifecycleEvent */
export type LifecycleEvent = typeof LifecycleEvent.Type

const providerTags: ReadonlySet<string> = new Set(ProviderEvent.members.map((m) => m._tag))

/** True for an event about a provider. */
export const isProviderEvent = (event: LifecycleEvent): event is ProviderEvent => providerTags.has(event._tag)

/**
 * The stream an event belongs to: `registration`, or `provider:<npi>`. Versions count per stream, so a
 * provider added while a registration call is in flight does not make that call's result stale.
 */
export const streamOf = (event: LifecycleEvent): string =>
  isProviderEvent(event) ? `provider:${event.npi}` : "registration"
