/**
 * The registry's success bodies as the Neuron reads them. Built from the shared `AxonApi` schemas, so a field
 * that is present is checked exactly as our registry promises it; only the fields the public CareAgent Axon
 * leaves out (docs/axon-client.md) become optional, and the client fills them in.
 */
import * as Schema from "effect/Schema"
import {
  HeartbeatAccepted,
  NeuronRegistered,
  ProviderList,
  ProviderRegistered,
  RegistrationId
} from "../protocol/AxonApi.js"

/** The public Axon's broker stops routing to a neuron silent for 5 minutes: the TTL when none is given. */
export const DEFAULT_TTL_S = 300
/** The contract's default heartbeat interval, when the registry does not say which one it accepted. */
export const DEFAULT_HEARTBEAT_INTERVAL_S = 60

/** Answer to `POST /v1/neurons` (201 or 200). The public Axon sends no `heartbeat_interval_s` and no `ttl_s`. */
export const RegistrationAnswer = Schema.Struct({
  registration_id: RegistrationId,
  // A token the Neuron could not send back is useless: refuse an empty one here rather than later.
  bearer_token: Schema.Redacted(Schema.String.pipe(Schema.minLength(1, { message: () => "must not be empty" }))),
  status: Schema.optional(NeuronRegistered.fields.status),
  heartbeat_interval_s: Schema.optional(NeuronRegistered.fields.heartbeat_interval_s),
  ttl_s: Schema.optional(NeuronRegistered.fields.ttl_s.pipe(Schema.positive()))
})

/** Answer to the heartbeat. The public Axon answers `{status: "reachable"}` without `last_heartbeat_at`. */
export const HeartbeatAnswer = Schema.Struct({
  status: HeartbeatAccepted.fields.status,
  last_heartbeat_at: Schema.optional(HeartbeatAccepted.fields.last_heartbeat_at)
})

/** Answer to a provider add (201 new, 200 already there): the same on both registries. */
export const ProviderAnswer = Schema.Struct(ProviderRegistered.fields)

/** Answer to the provider listing (our registry only). */
export const ProviderListAnswer = ProviderList
