/**
 * Ed25519 for the Neuron's side of the handshake: strict decoding of keys and signatures, refusal of
 * forgeable keys, a key imported once per message, verification through `node:crypto`.
 *
 * Why the weak-key check: OpenSSL (behind `crypto.verify`) accepts a forged signature (R = identity,
 * S = 0) for any message under a small-order public key (TRAPS.md). RFC 8032 also forbids non-canonical
 * encodings (y >= p, or x = 0 with the sign bit set).
 */
import { ed25519, ED25519_TORSION_SUBGROUP } from "@noble/curves/ed25519.js"
import { bytesToNumberLE } from "@noble/curves/utils.js"
import * as Either from "effect/Either"
import { createPublicKey, type KeyObject, verify as nodeVerify } from "node:crypto"
import { encodedLength, isCanonicalBase64Url } from "../domain/Base64Url.js"
import { ConsentError } from "./ConsentError.js"

/** A patient's Ed25519 public key: checked (canonical, not small-order) and imported once. */
export interface PatientKey {
  /** The 32 raw bytes. */
  readonly raw: Uint8Array
  /** The canonical base64url text (43 characters), as stored with a relationship. */
  readonly b64u: string
  /** The key imported into `node:crypto`, reused for every verification of this message. */
  readonly keyObject: KeyObject
}

/** Why a public-key encoding is refused. */
export type KeyWeakness = "small_order" | "non_canonical"

// The field prime p = 2^255 - 19 and the y coordinates of the 8 torsion points, taken from @noble/curves
// rather than written by hand. Both points sharing a y are torsion or neither (the torsion subgroup is closed
// under negation, which flips x only), so a canonical y outside this set is never a small-order point.
const P = ed25519.Point.Fp.ORDER
const TORSION_Y: ReadonlySet<bigint> = new Set(ED25519_TORSION_SUBGROUP.map((hex) => ed25519.Point.fromHex(hex).y))

/**
 * Classifies a 32-byte encoding: `"non_canonical"` when y >= p, `"small_order"` when it names one of the
 * 8 torsion points (in any sign-bit variant; x = 0 with the sign bit set is one of them), else `undefined`.
 * It costs two comparisons instead of the square root of a full decode (about 80 µs with @noble/curves),
 * which would double the handshake's crypto cost; an encoding that is not a curve point at all is left to
 * `node:crypto`, whose verification then fails. The tests check this against @noble's full decoding.
 */
export const keyWeakness = (raw: Uint8Array): KeyWeakness | undefined => {
  const masked = Uint8Array.from(raw)
  masked[31] = masked[31]! & 0x7f
  const y = bytesToNumberLE(masked)
  if (y >= P) return "non_canonical"
  if (TORSION_Y.has(y)) return "small_order"
  return undefined
}

/** Strictly decodes base64url text of exactly `bytes` bytes; `undefined` for anything else. */
export const decodeFixed = (text: unknown, bytes: number): Buffer | undefined =>
  typeof text === "string" && text.length === encodedLength(bytes) && isCanonicalBase64Url(text)
    ? Buffer.from(text, "base64url")
    : undefined

const malformed = (message: string) => Either.left(new ConsentError({ reason: "malformed", message }))

/** The public key sent as `field`: 43 base64url characters, canonical and not small-order, imported as a JWK. */
export const importPatientKey = (
  text: unknown,
  field = "patient_public_key"
): Either.Either<PatientKey, ConsentError> => {
  const raw = decodeFixed(text, 32)
  if (raw === undefined) {
    return malformed(`${field}: must be an Ed25519 public key: 32 bytes as unpadded base64url (43 characters)`)
  }
  const weakness = keyWeakness(raw)
  if (weakness !== undefined) {
    return Either.left(
      new ConsentError({
        reason: "weak_key",
        message: weakness === "small_order"
          ? `${field}: a small-order Ed25519 point is not an acceptable key`
          : `${field}: a non-canonical Ed25519 encoding is not an acceptable key`
      })
    )
  }
  try {
    // A JWK import is about twice as fast as wrapping the raw key in SPKI DER (TRAPS.md). `text` is canonical
    // base64url already, so it is the JWK's `x` as is.
    const keyObject = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: text as string }, format: "jwk" })
    return Either.right({ raw, b64u: text as string, keyObject })
  } catch (cause) {
    return Either.left(new ConsentError({ reason: "malformed", message: `${field}: not an Ed25519 public key`, cause }))
  }
}

/** The signature sent as `field`: exactly 64 bytes as 86 base64url characters. */
export const decodeSignature = (text: unknown, field: string): Either.Either<Buffer, ConsentError> => {
  const signature = decodeFixed(text, 64)
  return signature === undefined
    ? malformed(`${field}: must be an Ed25519 signature: 64 bytes as unpadded base64url (86 characters)`)
    : Either.right(signature)
}

/**
 * True when `signature` is a valid Ed25519 signature by `key` over exactly `data`. Synchronous, on the calling
 * thread: a verification takes about 60 µs, less than handing it to libuv's thread pool and resuming the fiber
 * afterwards costs in CPU (two thread hand-offs and a fiber suspension per verification; BENCHMARKS.md, issue 11).
 */
export const verify = (key: PatientKey, data: Uint8Array, signature: Uint8Array): boolean => {
  try {
    return nodeVerify(null, data, key.keyObject, signature)
  } catch {
    // Only reachable with a key or signature of the wrong kind, which the decoders above rule out.
    return false
  }
}
