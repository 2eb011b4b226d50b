/**
 * The lifecycle events of a consent relationship's end (PROTOCOL.md section 8), stored in `lifecycle_events`
 * next to the registration's, in the stream `relationship:<id>`. A relationship's stream holds one event at
 * version 1: its end. `UNIQUE (stream, version)` therefore lets a relationship end once, even across processes.
 * The creation is not an event: the handshake's hot path records it in the relationship row and its audit entry.
 */
import * as Schema from "effect/Schema"

const Text = Schema.String.pipe(Schema.minLength(1))

/** The patient revoked the relationship with a signature by the relationship's key. */
export class RelationshipRevoked extends Schema.TaggedClass<RelationshipRevoked>()("RelationshipRevoked", {
  relationship_id: Text,
  patient_agent_id: Text,
  provider_npi: Text,
  /** The time the patient signed (`revoked_at` of the request). */
  revoked_at: Text
}) {}

/** The organization terminated the relationship, for `reason`. */
export class RelationshipTerminated extends Schema.TaggedClass<RelationshipTerminated>()("RelationshipTerminated", {
  relationship_id: Text,
  patient_agent_id: Text,
  provider_npi: Text,
  reason: Text
}) {}

/** Every relationship event. */
export const RelationshipEvent = Schema.Union(RelationshipRevoked, RelationshipTerminated)
/** @see RelationshipEvent */
export type RelationshipEvent = typeof RelationshipEvent.Type

/** The prefix of every relationship stream; the registration's replay leaves these streams out. */
export const RELATIONSHIP_STREAM_PREFIX = "relationship:"

/** The stream of one relationship's events. */
export const relationshipStream = (relationship_id: string): string => RELATIONSHIP_STREAM_PREFIX + relationship_id
