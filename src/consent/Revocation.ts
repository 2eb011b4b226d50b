/**
 * The proof of a patient's revocation (PROTOCOL.md section 8): an Ed25519 signature by the relationship's stored
 * patient key over `careagent-consent-revoke:<relationship_id>:<revoked_at>`, with `revoked_at` within 5 minutes
 * of the server's clock. The stored key is held to the handshake's rules again (canonical, not small-order)
 * before it verifies anything: a forgeable key must not revoke either.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import { REVOCATION_WINDOW_MS, revocationMessage, type RevokeConsentRequest } from "../protocol/ConsentRevocation.js"
import { ConsentError } from "./ConsentError.js"
import { decodeSignature, importPatientKey, type PatientKey, verify } from "./Ed25519.js"

const refuse = (reason: ConsentError["reason"], message: string) => Effect.fail(new ConsentError({ reason, message }))

/**
 * Checks a revocation against the relationship's stored key; gives the imported key (for its fingerprint).
 * Refusals: `malformed` (the signature's encoding), `outside_window`, `weak_key`, `invalid_signature`.
 */
export const verifyRevocation = Effect.fnUntraced(function*(
  request: Pick<RevokeConsentRequest, "relationship_id" | "revoked_at" | "signature">,
  storedKey: string
) {
  const signature = yield* decodeSignature(request.signature, "signature")
  const at = Date.parse(request.revoked_at)
  const now = yield* Clock.currentTimeMillis
  if (!Number.isFinite(at) || Math.abs(at - now) > REVOCATION_WINDOW_MS) {
    return yield* refuse("outside_window", "revoked_at must be within 5 minutes of the neuron's clock")
  }
  const key: PatientKey = yield* Effect.mapError(
    importPatientKey(storedKey),
    // Stored keys passed these rules at the handshake; one that does not now is refused, never trusted.
    () => new ConsentError({ reason: "weak_key", message: "the relationship's patient key is not an acceptable key" })
  )
  const message = Buffer.from(revocationMessage(request.relationship_id, request.revoked_at), "utf8")
  if (!verify(key, message, signature)) {
    return yield* refuse("invalid_signature", "signature does not verify under the relationship's patient key")
  }
  return key
})
