/**
 * Relationships: what the admin API, the public revocation route and the handshake socket do with a consent
 * relationship after the handshake (PROTOCOL.md section 8): read it, terminate it (the organization) and revoke
 * it (the patient, proven by the relationship's own key). Both ends are permanent; a revocation repeated gives
 * the same answer, an end of an ended relationship otherwise is `AlreadyEnded`.
 */
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { ConsentError } from "../consent/ConsentError.js"
import { verifyRevocation } from "../consent/Revocation.js"
import { keyFingerprint } from "../handshake/HandshakeProtocol.js"
import { type Relationship, RelationshipNotFound, RelationshipStore } from "../handshake/RelationshipStore.js"
import type { RevokeConsentRequest } from "../protocol/ConsentRevocation.js"

export { RelationshipNotFound } from "../handshake/RelationshipStore.js"

/** The relationship has ended already (a termination of an ended one, a revocation of a terminated one). */
export class AlreadyEnded extends Schema.TaggedError<AlreadyEnded>()("AlreadyEnded", {
  relationship_id: Schema.String,
  status: Schema.Literal("revoked", "terminated"),
  message: Schema.String
}) {}

const alreadyEnded = (relationship: Relationship) =>
  new AlreadyEnded({
    relationship_id: relationship.relationship_id,
    status: relationship.status === "terminated" ? "terminated" : "revoked",
    message: `the relationship was ${relationship.status} at ${relationship.ended_at}`
  })

const notFound = (relationship_id: string) =>
  new RelationshipNotFound({ relationship_id, message: `no relationship ${relationship_id}` })

/** A revocation's answer: the relationship, revoked (now, or by the same patient earlier). */
export interface Revoked {
  readonly relationship_id: string
  readonly ended_at: string
}

/** How a revocation reached the Neuron: recorded in its audit entry. */
export type RevocationChannel =
  | { readonly via: "http" }
  | { readonly via: "handshake_socket"; readonly connection_id: string }

/** Builds the service on the RelationshipStore. */
export const make = Effect.gen(function*() {
  const store = yield* RelationshipStore

  /** One relationship; `RelationshipNotFound` for an unknown id. */
  const get = (relationship_id: string): Effect.Effect<Relationship, RelationshipNotFound> =>
    Effect.flatMap(
      store.get(relationship_id),
      Option.match({ onNone: () => Effect.fail(notFound(relationship_id)), onSome: Effect.succeed })
    )

  /** The organization ends an active relationship for `reason`. */
  const terminate = (
    relationship_id: string,
    reason: string,
    actor = "operator"
  ): Effect.Effect<Relationship, RelationshipNotFound | AlreadyEnded> =>
    Effect.flatMap(
      store.end(relationship_id, { status: "terminated", reason, actor }),
      (ended) =>
        ended.outcome === "ended" ? Effect.succeed(ended.relationship) : Effect.fail(alreadyEnded(ended.relationship))
    ).pipe(Effect.withSpan("Relationships.terminate"))

  /**
   * The patient revokes: the signature is checked (window, key rules, signature) before anything else is
   * said about the relationship, so that only its key holder learns that it was terminated. The same revocation
   * again answers the same. `via` says how it came (`http`, or `handshake_socket` with its connection id), for
   * the audit entry.
   */
  const revoke = (
    request: Pick<RevokeConsentRequest, "relationship_id" | "revoked_at" | "signature">,
    via: RevocationChannel = { via: "http" }
  ): Effect.Effect<Revoked, RelationshipNotFound | AlreadyEnded | ConsentError> =>
    Effect.gen(function*() {
      const relationship = yield* get(request.relationship_id)
      const key = yield* verifyRevocation(request, relationship.patient_public_key)
      const ended = yield* store.end(request.relationship_id, {
        status: "revoked",
        revoked_at: request.revoked_at,
        details: { key_fingerprint: keyFingerprint(key.raw), ...via }
      })
      const now = ended.relationship
      if (now.status !== "revoked" || now.ended_at === null) return yield* alreadyEnded(now)
      return { relationship_id: now.relationship_id, ended_at: now.ended_at }
    }).pipe(
      Effect.tapError((e) =>
        Effect.logInfo("revocation refused").pipe(
          Effect.annotateLogs({
            service: "Relationships",
            relationship_id: request.relationship_id,
            error: e._tag,
            ...(e._tag === "ConsentError" ? { reason: e.reason } : {})
          })
        )
      ),
      Effect.withSpan("Relationships.revoke")
    )

  return { get, list: store.list, terminate, revoke } as const
})

/** Reading and ending relationships; needs the RelationshipStore (and so the AuditLog and SqlClient). */
export class Relationships extends Effect.Service<Relationships>()("neuron/Relationships", {
  effect: make,
  dependencies: [RelationshipStore.Default]
}) {}
