/**
 * The wire contract of a patient's revocation (PROTOCOL.md section 8): the signed string, the request (over HTTP,
 * `POST /v1/consent/revoke`, or as `consent.revoke`, the first message of a handshake socket) and the answers.
 * Shared by the Neuron and the CareAgent client.
 */
import * as Schema from "effect/Schema"
import { encodedLength, isCanonicalBase64Url } from "../domain/Base64Url.js"

/** The UTF-8 text a patient signs to revoke `relationship_id` at `revoked_at` (exactly as sent). */
export const revocationMessage = (relationship_id: string, revoked_at: string): string =>
  `careagent-consent-revoke:${relationship_id}:${revoked_at}`

/** How far `revoked_at` may be from the server's clock, either way. */
export const REVOCATION_WINDOW_MS = 5 * 60 * 1000

/** A relationship id: this Neuron issues UUIDs; any 1..128 of `A-Z a-z 0-9 _ -` is read (and found or not). */
export const RelationshipId = Schema.String.pipe(
  Schema.filter((s) => /^[A-Za-z0-9_-]{1,128}$/.test(s) || "must be a relationship id: 1 to 128 of A-Z a-z 0-9 _ -"),
  Schema.annotations({
    identifier: "RelationshipId",
    // Property tests get ids directly: a filter over random strings would rarely pass.
    arbitrary: () => (fc) => fc.oneof(fc.uuid(), fc.stringMatching(/^[A-Za-z0-9_-]{1,128}$/))
  })
)

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/

/** An ISO-8601 date and time with its offset (`2026-11-22T10:30:00.000Z`), kept as the text that was signed. */
export const IsoTimeText = Schema.String.pipe(
  Schema.filter((s) =>
    (ISO_TIME.test(s) && Number.isFinite(Date.parse(s))) ||
    "must be an ISO-8601 date and time with its offset, such as 2026-11-22T10:30:00.000Z"
  ),
  Schema.annotations({
    identifier: "IsoTimeText",
    arbitrary: () => (fc) =>
      fc.date({ min: new Date("2000-01-01T00:00:00Z"), max: new Date("2100-01-01T00:00:00Z"), noInvalidDate: true })
        .map((d) => d.toISOString())
  })
)

/** An Ed25519 signature as text: 64 bytes as unpadded base64url (86 characters). */
export const SignatureText = Schema.String.pipe(
  Schema.filter((s) =>
    (s.length === encodedLength(64) && isCanonicalBase64Url(s)) ||
    "must be an Ed25519 signature: 64 bytes as unpadded base64url (86 characters)"
  ),
  Schema.annotations({
    identifier: "SignatureText",
    arbitrary: () => (fc) =>
      fc.uint8Array({ minLength: 64, maxLength: 64 }).map((b) => Buffer.from(b).toString("base64url"))
  })
)

/** `POST /v1/consent/revoke` body; the fields of `consent.revoke`. */
export class RevokeConsentRequest extends Schema.Class<RevokeConsentRequest>("RevokeConsentRequest")({
  relationship_id: RelationshipId,
  revoked_at: IsoTimeText,
  /** By the relationship's patient key, over `revocationMessage(relationship_id, revoked_at)`. */
  signature: SignatureText
}) {}

/** `200` to a revocation, and to the same revocation again. */
export class ConsentRevoked extends Schema.Class<ConsentRevoked>("ConsentRevoked")({
  relationship_id: Schema.String,
  status: Schema.Literal("revoked"),
  ended_at: Schema.String
}) {}

/** The handshake socket's message types of a revocation. */
export const RevocationMessageType = { revoke: "consent.revoke", revoked: "consent.revoked" } as const

/** Client → server, as the first message of a handshake socket. */
export const ConsentRevokeMessage = Schema.Struct({
  type: Schema.Literal(RevocationMessageType.revoke),
  ...RevokeConsentRequest.fields
}).annotations({ identifier: "ConsentRevokeMessage" })
/** @see ConsentRevokeMessage */
export type ConsentRevokeMessage = typeof ConsentRevokeMessage.Type

/** Server → client: the relationship is revoked; the server closes with 1000. */
export const ConsentRevokedMessage = Schema.Struct({
  type: Schema.Literal(RevocationMessageType.revoked),
  relationship_id: Schema.String,
  ended_at: Schema.String
}).annotations({ identifier: "ConsentRevokedMessage" })
/** @see ConsentRevokedMessage */
export type ConsentRevokedMessage = typeof ConsentRevokedMessage.Type
