/**
 * Why a consent handshake was refused, and the one place that maps a refusal to the wire
 * (PROTOCOL.md section 2, error table). Messages go to the peer as they are: they never carry the
 * token, a signature or a full key.
 */
import * as Schema from "effect/Schema"

/** Every reason a consent token or a challenge answer is refused. */
export const ConsentErrorReason = Schema.Literal(
  /** An undecodable payload, signature, key or claims (bad base64url, wrong length, not JSON, a bad claim). */
  "malformed",
  /** A small-order or non-canonically encoded public key: forgeable, refused before any verification. */
  "weak_key",
  /** The consent token's signature does not verify under the patient's key. */
  "invalid_signature",
  /** `exp` is not after now. */
  "expired",
  /** `iat` is more than the allowed skew in the future. */
  "not_yet_valid",
  /** The token's `patient_agent_id` differs from the message's. */
  "patient_mismatch",
  /** The token names another organization. */
  "wrong_organization",
  /** The token's `provider_npi` is not a valid NPI. */
  "invalid_provider_npi",
  /** The signature over the challenge nonce does not verify. */
  "challenge_failed",
  /** The challenge was answered after its `expires_at`. */
  "challenge_expired",
  /** The nonce is unknown, already used, or was issued to another connection. */
  "challenge_unknown",
  /** The key differs from the one an existing relationship was made with. */
  "key_mismatch",
  /** A revocation's `revoked_at` is more than 5 minutes from the server's clock. */
  "outside_window"
)

/** @see ConsentErrorReason */
export type ConsentErrorReason = typeof ConsentErrorReason.Type

/** A refused consent token or challenge answer. */
export class ConsentError extends Schema.TaggedError<ConsentError>()("ConsentError", {
  reason: ConsentErrorReason,
  /** Safe to send to the peer and to log. */
  message: Schema.String,
  cause: Schema.optional(Schema.Defect)
}) {}

/** The handshake error codes a `ConsentError` can become. */
export type ConsentWireCode = "INVALID_MESSAGE" | "CONSENT_FAILED" | "AUTH_TIMEOUT"

/** What the handshake sends (`handshake.error`) and the close code it closes with. */
export interface ConsentWire {
  readonly code: ConsentWireCode
  readonly closeCode: 4001 | 4002 | 4003
  readonly message: string
}

/**
 * The single mapping of a refusal to the wire: a malformed token is `INVALID_MESSAGE` (4002), a challenge
 * answered too late is `AUTH_TIMEOUT` (4001, like a missing answer), everything else `CONSENT_FAILED` (4003).
 */
export const toWire = (error: ConsentError): ConsentWire => {
  switch (error.reason) {
    case "malformed":
      return { code: "INVALID_MESSAGE", closeCode: 4002, message: error.message }
    case "challenge_expired":
      return { code: "AUTH_TIMEOUT", closeCode: 4001, message: error.message }
    default:
      return { code: "CONSENT_FAILED", closeCode: 4003, message: error.message }
  }
}
